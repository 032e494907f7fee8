"""Card product profiles: a product described as data (YAML), not code.

``load_builtin("debit")`` / ``load_profile(path)`` give a validated
:class:`~cardperso.profiles.schema.Profile`; any problem is a
:class:`~cardperso.profiles.loader.ProfileError` naming the file and YAML path.
The schema is in :mod:`.schema`, cross-part checks in :mod:`.consistency`, the
template mini-language in :mod:`.template`; built-in products in ``builtin/``.
"""

from __future__ import annotations

from cardperso.profiles.loader import (
    ProfileError,
    dump_profile,
    list_builtin,
    load_builtin,
    load_profile,
    parse_profile,
    resolve_profile,
)
from cardperso.profiles.schema import Profile

__all__ = [
    "Profile",
    "ProfileError",
    "dump_profile",
    "list_builtin",
    "load_builtin",
    "load_profile",
    "parse_profile",
    "resolve_profile",
]
