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
from collections.abc import Mapping

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


def transliterate(text: str, allowed: frozenset[str] = EMBOSS_NAME_CHARS) -> str:
    """Upper-case ``text`` mapped onto ``allowed`` (ICAO 9303 Part 3 §6 Latin rules)."""
    out: list[str] = []
    for ch in text.upper():
        mapped = _ICAO.get(ch)
        if mapped is None:
            decomposed = unicodedata.normalize("NFKD", ch)
            mapped = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
        out.extend(c for c in mapped if c in allowed)
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def apply_filter(name: str, value: str, field: str) -> str:
    """One template filter (names in cardperso.profiles.template.FILTERS)."""
    if name == "upper":
        return value.upper()
    if name == "emboss":
        return transliterate(value, EMBOSS_NAME_CHARS)
    if name == "track":
        return transliterate(value, TRACK1_NAME_CHARS)
    if name == "initial":
        return value[:1]
    if name == "group4":
        digits = value.replace(" ", "")
        return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    if name in ("mmyy", "yymmdd"):
        if not re.fullmatch(r"[0-9]{2}(0[1-9]|1[0-2])", value):
            raise RenderError(field, f"filter {name} needs a YYMM value")
        if name == "mmyy":
            return f"{value[2:]}/{value[:2]}"
        last = calendar.monthrange(2000 + int(value[:2]), int(value[2:]))[1]
        return f"{value}{last:02d}"
    raise RenderError(field, f"unknown filter {name!r}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``template`` from ``values``; a missing field renders as empty text."""
    out: list[str] = []
    for part in parse_template(template):
        if isinstance(part, Placeholder):
            v = values.get(part.field, "")
            for f in part.filters:
                v = apply_filter(f, v, part.field)
            out.append(v)
        else:
            out.append(part)
    return "".join(out)
