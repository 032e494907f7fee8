"""Text for the card body and the stripe: transliteration and profile templates.

Issuer data is Unicode (``Jürgen Müller``, ``François Lefèvre``); embossing
punches and track 1 know upper-case Latin letters, digits and a few marks only.
:func:`transliterate` follows the Latin transliteration of ICAO Doc 9303 Part 3
(machine-readable travel documents, §6 "Transliterations", Table of Latin
characters): ``Ä -> AE``, ``Å -> AA``, ``Ø -> OE``, ``ß -> SS``, ``Þ -> TH``...
and, for any other accented letter, the base letter (Unicode NFKD decomposition
with the combining marks removed). What is still outside the target set is dropped.

:func:`render` fills a profile template (:mod:`cardperso.profiles.template`).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache

from cardperso.profiles.template import Placeholder, parse_template

__all__ = [
    "EMBOSS_NAME_CHARS",
    "TRACK1_NAME_CHARS",
    "RenderError",
    "apply_filter",
    "render",
    "transliterate",
]

EMBOSS_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 &',-./")
"""Characters of an embossed name/address line (see cardperso.dataprep.fields)."""

TRACK1_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -./")
"""Characters this system writes into a track-1 name (see cardperso.dataprep.magstripe)."""

# ICAO Doc 9303 Part 3, §6, transliteration of multinational Latin-based characters.
_ICAO = {
    "Ä": "AE",
    "Å": "AA",
    "Æ": "AE",
    "Ö": "OE",
    "Ø": "OE",
    "Ü": "UE",
    "ß": "SS",
    "ẞ": "SS",
    "Þ": "TH",
    "Ð": "D",
    "Đ": "D",
    "Œ": "OE",
    "Ĳ": "IJ",
    "Ł": "L",
    "Ħ": "H",
    "Ŋ": "N",
    "ı": "I",
    "’": "'",
    "‘": "'",
    "ʼ": "'",
}


class RenderError(ValueError):
    """A value a template filter cannot transform; ``field`` names its input field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


_SPACES = re.compile(r" {2,}")
_YYMM = re.compile(r"[0-9]{2}(0[1-9]|1[0-2])")
_ASCII_DROP: dict[frozenset[str], dict[int, None]] = {}


def _ascii_drop(allowed: frozenset[str]) -> dict[int, None]:
    """``str.translate`` table deleting the ASCII characters outside ``allowed``."""
    table = _ASCII_DROP.get(allowed)
    if table is None:
        if len(_ASCII_DROP) > 64:
            _ASCII_DROP.clear()
        table = _ASCII_DROP[allowed] = {c: None for c in range(128) if chr(c) not in allowed}
    return table


@lru_cache(maxsize=8192)
def transliterate(text: str, allowed: frozenset[str] = EMBOSS_NAME_CHARS) -> str:
    """Upper-case ``text`` mapped onto ``allowed`` (ICAO 9303 Part 3 §6 Latin rules).

    Names repeat across a batch: the most recent results are remembered."""
    if text.isascii():  # no transliteration to do: keep what is allowed (the common case)
        kept = text.upper().translate(_ascii_drop(allowed))
    else:
        out: list[str] = []
        for ch in text.upper():
            mapped = _ICAO.get(ch)
            if mapped is None:
                decomposed = unicodedata.normalize("NFKD", ch)
                mapped = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
            out.extend(c for c in mapped if c in allowed)
        kept = "".join(out)
    if "  " in kept:
        kept = _SPACES.sub(" ", kept)
    return kept.strip()


def _group4(value: str) -> str:
    digits = value.replace(" ", "")
    return " ".join([digits[i : i + 4] for i in range(0, len(digits), 4)])


@lru_cache(maxsize=4096)
def _yymm(name: str, value: str, field: str) -> str:
    if not _YYMM.fullmatch(value):
        raise RenderError(field, f"filter {name} needs a YYMM value")
    if name == "mmyy":
        return f"{value[2:]}/{value[:2]}"
    last = calendar.monthrange(2000 + int(value[:2]), int(value[2:]))[1]
    return f"{value}{last:02d}"


_Filter = Callable[[str, str], str]  # (value, field) -> text

_FILTERS: dict[str, _Filter] = {
    "upper": lambda value, field: value.upper(),
    "emboss": lambda value, field: transliterate(value, EMBOSS_NAME_CHARS),
    "track": lambda value, field: transliterate(value, TRACK1_NAME_CHARS),
    "initial": lambda value, field: value[:1],
    "group4": lambda value, field: _group4(value),
    "mmyy": lambda value, field: _yymm("mmyy", value, field),
    "yymmdd": lambda value, field: _yymm("yymmdd", value, field),
}


def apply_filter(name: str, value: str, field: str) -> str:
    """One template filter (names in cardperso.profiles.template.FILTERS)."""
    f = _FILTERS.get(name)
    if f is None:
        raise RenderError(field, f"unknown filter {name!r}")
    return f(value, field)


_Renderer = Callable[[Mapping[str, str]], str]


def _placeholder(field: str, filters: tuple[str, ...]) -> _Renderer:
    if not filters:
        return lambda values: values.get(field, "")
    if len(filters) == 1 and filters[0] in _FILTERS:
        one = _FILTERS[filters[0]]
        return lambda values: one(values.get(field, ""), field)

    def filtered(values: Mapping[str, str]) -> str:
        v = values.get(field, "")
        for f in filters:
            v = apply_filter(f, v, field)
        return v

    return filtered


def _literal(text: str) -> _Renderer:
    return lambda values: text


@lru_cache(maxsize=1024)
def _renderer(template: str) -> _Renderer:
    """``template`` made into one function of the record (parsed once)."""
    parts: list[_Renderer] = []
    for p in parse_template(template):
        if isinstance(p, Placeholder):
            parts.append(_placeholder(p.field, p.filters))
        else:
            parts.append(_literal(p))
    if len(parts) == 1:
        return parts[0]
    return lambda values: "".join([part(values) for part in parts])


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``template`` from ``values``; a missing field renders as empty text."""
    return _renderer(template)(values)
