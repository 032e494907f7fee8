"""Text templates in profiles: ``"{family_name|track}/{given_name|track}"``.

A template is literal text with placeholders ``{field}`` or ``{field|filter|filter}``.
``field`` names an input field of the profile; each filter transforms the text
left to right. Literal braces are written ``{{`` and ``}}``. This module only
*parses* (so a profile check can name a missing field or an unknown filter before
any record is read); :mod:`cardperso.dataprep.text` renders.

Filters:

``upper``
    upper-case.
``emboss``
    transliterate to the embossing character set (``Müller`` -> ``MUELLER``).
``track``
    transliterate to the characters a track-1 name may hold (ISO/IEC 7813).
``group4``
    digits in groups of four separated by a space (PAN on the card face).
``mmyy``
    ``YYMM`` -> ``MM/YY`` (expiry as embossed).
``yymmdd``
    ``YYMM`` -> ``YYMMDD`` with the last day of that month (EMV tag 5F24, n 6).
``initial``
    the first character only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["FILTERS", "Placeholder", "TemplateError", "fields_of", "parse_template"]

FILTERS = frozenset({"upper", "emboss", "track", "group4", "mmyy", "yymmdd", "initial"})

_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")


class TemplateError(ValueError):
    """A template that does not parse; the message says where."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``{field|filter...}`` slot."""

    field: str
    filters: tuple[str, ...] = ()


@lru_cache(maxsize=1024)
def parse_template(text: str) -> tuple[str | Placeholder, ...]:
    """Split ``text`` into literal strings and placeholders; raise TemplateError if bad.

    Results are cached: a profile has a handful of templates, rendered per record."""
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i)
            if end < 0:
                raise TemplateError(f"unclosed '{{' at position {i + 1}")
            inner = text[i + 1 : end]
            name, *filters = [p.strip() for p in inner.split("|")]
            if not _NAME.match(name):
                raise TemplateError(f"bad field name {name!r} at position {i + 1}")
            for f in filters:
                if f not in FILTERS:
                    raise TemplateError(
                        f"unknown filter {f!r} (known: {', '.join(sorted(FILTERS))})"
                    )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(name, tuple(filters)))
            i = end + 1
        elif c == "}":
            raise TemplateError(f"unmatched '}}' at position {i + 1} (write '}}}}')")
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def fields_of(text: str) -> tuple[str, ...]:
    """The field names a template uses, in order of first use."""
    seen: dict[str, None] = {}
    for p in parse_template(text):
        if isinstance(p, Placeholder):
            seen.setdefault(p.field, None)
    return tuple(seen)
