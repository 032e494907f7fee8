"""Load profile YAML into a :class:`~cardperso.profiles.schema.Profile`.

Every problem becomes a :class:`ProfileError` (a ``ConfigError``) whose lines each
name the file and the YAML path, e.g. ``debit.yaml: files[2].size: required for a
transparent EF``. YAML is read with the safe loader; a key given twice in one
mapping is an error (plain PyYAML would silently keep the last one).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cardperso.errors import ConfigError
from cardperso.profiles.schema import Profile

__all__ = [
    "ProfileError",
    "dump_profile",
    "list_builtin",
    "load_builtin",
    "load_profile",
    "parse_profile",
    "resolve_profile",
]


class ProfileError(ConfigError):
    """A profile that does not load; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    msg = str(err.get("msg", ""))
    return msg.removeprefix("Value error, ")


def parse_profile(text: str, source: str) -> Profile:
    """Validate profile YAML ``text``; ``source`` is the file name used in messages."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ProfileError([f"{where}: YAML error: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise ProfileError([f"{source}: YAML error: {e}"]) from None
    if not isinstance(data, dict):
        raise ProfileError([f"{source}: a profile is a YAML mapping of keys to values"])
    try:
        return Profile.model_validate(data)
    except ValidationError as e:
        lines: list[str] = []
        for err in e.errors():
            loc = _loc(tuple(err["loc"]))
            msg = _message(err)
            if (not loc and "\n" in msg) or (not loc and ": " in msg):
                lines.extend(f"{source}: {line}" for line in msg.splitlines())
            else:
                lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
        raise ProfileError(lines) from None


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError([f"{p.name}: cannot read profile: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ProfileError([f"{p.name}: profile is not UTF-8 text"]) from None
    return parse_profile(text, p.name)


def _builtin_dir() -> Any:
    return resources.files("cardperso.profiles") / "builtin"


def list_builtin() -> list[str]:
    """Names of the profiles shipped with cardperso."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _builtin_dir().iterdir()
        if entry.name.endswith(".yaml")
    )


def load_builtin(name: str) -> Profile:
    """Load a built-in profile by name (``debit``, ``sim``, ``employee``)."""
    if name not in list_builtin():
        raise ProfileError(
            [f"unknown profile {name!r} (built-in profiles: {', '.join(list_builtin())})"]
        )
    text = (_builtin_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    return parse_profile(text, f"{name}.yaml")


def resolve_profile(path_or_name: str | Path) -> Profile:
    """A profile file path, or the name of a built-in profile."""
    s = str(path_or_name)
    if isinstance(path_or_name, Path) or s.endswith((".yaml", ".yml")) or "/" in s:
        return load_profile(path_or_name)
    return load_builtin(s)


def dump_profile(profile: Profile) -> str:
    """YAML text that loads back to an equal profile (defaults left out)."""
    data = profile.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
