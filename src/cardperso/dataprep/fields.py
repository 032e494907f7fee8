"""Field validators for issuer records, postal-code rules and the presort key.

Every ``check_*`` function returns ``None`` for a good value or one short reason
for a bad one. Reasons name the rule that failed and never quote the value (a PAN,
a name or an address is cardholder data, DESIGN.md §4); where a single character is
at fault its position and code point are given so the issuer can find it.

Embossing (ISO/IEC 7811-1, "Identification cards - Recording technique - Part 1:
Embossing"; the location clauses were ISO/IEC 7811-3 before the 2014 merge):
the identification number line holds at most 19 characters and the name and
address area at most 4 lines of 27 characters. The standard takes the glyphs from
Farrington 7B (number line) and ISO 1073-1/-2 OCR-A/OCR-B (name area) and leaves
the repertoire of a line to the card programme; this module's default sets are
the conservative common subset embossers accept: number line = digits and space;
name line = A-Z, 0-9, space and ``& ' , - . /``. A profile can tighten a line's
length (``max_length``). The character-set text of the standard itself is not
public; these sets were chosen from the 7811-1 glyph sources, not copied from it.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from cardperso.dataprep.text import EMBOSS_NAME_CHARS
from cardperso.payments._digits import luhn_valid
from cardperso.profiles.schema import EmbossArea, FieldRule, InputField

__all__ = [
    "DEFAULT_POSTAL_RULES",
    "EMBOSS_NUMBER_CHARS",
    "NAME_LINE_MAX",
    "NUMBER_LINE_MAX",
    "PostalRule",
    "ValidationContext",
    "check_base64",
    "check_country",
    "check_digits",
    "check_emboss",
    "check_expiry",
    "check_hex",
    "check_iccid",
    "check_imsi",
    "check_luhn",
    "check_name",
    "check_pan",
    "check_photo",
    "check_postal_code",
    "check_text",
    "decode_pbm",
    "normalize_postal_code",
    "presort_key",
    "validate_value",
]

NUMBER_LINE_MAX = 19
"""ISO/IEC 7811-1: characters on the identification number line."""
NAME_LINE_MAX = 27
"""ISO/IEC 7811-1: characters per line of the name and address area."""
EMBOSS_NUMBER_CHARS = frozenset("0123456789 ")
"""Number line: Farrington 7B numerals and the space between groups."""

_DIGITS = re.compile(r"[0-9]*")
_YYMM = re.compile(r"[0-9]{4}")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_COUNTRY = re.compile(r"[A-Z]{2}")
_WHITESPACE = re.compile(r"\s+")
_LETTERS = re.compile(r"[A-Z]+")
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")
"""A digit doubled, its two digits summed (Luhn)."""


def _span(lo: int | None, hi: int | None, unit: str) -> str:
    if lo is not None and hi is not None:
        return f"{lo} {unit}" if lo == hi else f"{lo} to {hi} {unit}"
    if hi is not None:
        return f"at most {hi} {unit}"
    return f"at least {lo} {unit}"


def _length(n: int, lo: int | None, hi: int | None, unit: str, what: str) -> str | None:
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        return f"{what} must be {_span(lo, hi, unit)} (got {n})"
    return None


def _char(text: str, i: int) -> str:
    return f"position {i + 1} (U+{ord(text[i]):04X})"


# -- payment card and telecom identifiers -----------------------------------------


def _luhn_ok(digits: str) -> bool:
    """:func:`~cardperso.payments._digits.luhn_valid` for a string of ASCII digits, in C
    where it can be: the digits in odd places from the right as they are, the others
    doubled with their digits summed (ISO/IEC 7812-1 Annex B)."""
    doubled = digits[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(map(int, digits[-1::-2])) + sum(map(int, doubled))) % 10 == 0


def check_luhn(digits: str, what: str = "number") -> str | None:
    """ISO/IEC 7812-1 Annex B (Luhn, modulus 10) check digit."""
    if 2 <= len(digits) <= 65 and digits.isascii() and digits.isdigit():
        if _luhn_ok(digits):
            return None
    elif luhn_valid(digits):
        return None
    return f"{what} fails the Luhn check (ISO/IEC 7812-1 Annex B)"


def check_pan(value: str, min_length: int = 12, max_length: int = 19) -> str | None:
    """PAN: 12 to 19 digits (ISO/IEC 7812-1 §4), Luhn check digit last."""
    if not _DIGITS.fullmatch(value) or not value.isascii():
        return "PAN must contain digits only"
    lo, hi = max(12, min_length), min(19, max_length)
    if not lo <= len(value) <= hi:
        return f"PAN must be {_span(lo, hi, 'digits')} (got {len(value)})"
    return check_luhn(value, "PAN")


def check_expiry(value: str, today: date, max_years: int = 20) -> str | None:
    """Expiry ``YYMM``: a real month, not before the current month, not absurdly far."""
    if not _YYMM.fullmatch(value):
        return "expiry must be YYMM (4 digits)"
    year, month = 2000 + int(value[:2]), int(value[2:])
    if not 1 <= month <= 12:
        return "expiry month must be 01 to 12"
    if (year, month) < (today.year, today.month):
        return f"card would be expired: expiry is before {today.year:04d}-{today.month:02d}"
    if (year, month) > (today.year + max_years, today.month):
        return f"expiry is more than {max_years} years ahead"
    return None


def check_iccid(value: str) -> str | None:
    """ICCID (ITU-T E.118 §4.2): 19 or 20 digits, major industry identifier 89, Luhn."""
    if not _DIGITS.fullmatch(value) or not value.isascii():
        return "ICCID must contain digits only"
    if len(value) not in (19, 20):
        return f"ICCID must be 19 or 20 digits (got {len(value)})"
    if not value.startswith("89"):
        return "ICCID must start with 89 (telecommunication, ITU-T E.118)"
    return check_luhn(value, "ICCID")


def check_imsi(value: str) -> str | None:
    """IMSI (3GPP TS 23.003 §2.2): 15 digits, MCC (3 digits) not 000."""
    if not _DIGITS.fullmatch(value) or not value.isascii():
        return "IMSI must contain digits only"
    if len(value) != 15:
        return f"IMSI must be 15 digits (got {len(value)})"
    if value.startswith("000"):
        return "IMSI mobile country code 000 is not assigned (3GPP TS 23.003 §2.2)"
    return None


# -- text -------------------------------------------------------------------------


def check_emboss(
    value: str, area: EmbossArea = EmbossArea.NAME, max_length: int | None = None
) -> str | None:
    """One embossed line: character set and length of its ISO/IEC 7811-1 area."""
    allowed = EMBOSS_NUMBER_CHARS if area == EmbossArea.NUMBER else EMBOSS_NAME_CHARS
    limit = NUMBER_LINE_MAX if area == EmbossArea.NUMBER else NAME_LINE_MAX
    if max_length is not None:
        limit = min(limit, max_length)
    for i, ch in enumerate("" if allowed.issuperset(value) else value):
        if ch not in allowed:
            kind = "number line" if area == EmbossArea.NUMBER else "name line"
            return (
                f"{_char(value, i)} is not an embossing character for the {kind} (ISO/IEC 7811-1)"
            )
    if len(value) > limit:
        return f"embossed line is {len(value)} characters, more than {limit} (ISO/IEC 7811-1)"
    if not value.strip():
        return "embossed line is empty"
    return None


_NAME_MARKS = frozenset(" -'.’")


_ASCII_NAME = re.compile(r"[A-Za-z][A-Za-z '.\-]*")
_ASCII_TEXT = re.compile(r"[\x20-\x7E]*")


def check_name(value: str, min_length: int = 1, max_length: int | None = None) -> str | None:
    """A person's name: letters of any script, spaces, hyphens, apostrophes, periods."""
    if _ASCII_NAME.fullmatch(value):
        return _length(len(value), min_length, max_length, "characters", "name")
    if not value or not unicodedata.category(value[0]).startswith("L"):
        return "name must start with a letter"
    for i, ch in enumerate(value):
        cat = unicodedata.category(ch)
        if not (cat.startswith("L") or cat.startswith("M") or ch in _NAME_MARKS):
            return f"{_char(value, i)} is not a letter, space, hyphen, apostrophe or period"
    return _length(len(value), min_length, max_length, "characters", "name")


def check_text(
    value: str, min_length: int | None = None, max_length: int | None = None
) -> str | None:
    """Printable Unicode text without control characters."""
    if not _ASCII_TEXT.fullmatch(value):  # fast path: printable ASCII has no controls
        for i, ch in enumerate(value):
            if unicodedata.category(ch).startswith("C"):
                return f"{_char(value, i)} is a control or unassigned character"
    if value != value.strip():
        return "text has leading or trailing spaces"
    return _length(len(value), min_length, max_length, "characters", "text")


def check_digits(
    value: str, min_length: int | None = None, max_length: int | None = None
) -> str | None:
    """ASCII decimal digits."""
    if not _DIGITS.fullmatch(value) or not value.isascii():
        return "must contain digits only"
    return _length(len(value), min_length, max_length, "digits", "value")


def check_hex(
    value: str, min_length: int | None = None, max_length: int | None = None
) -> str | None:
    """Hexadecimal digits (either case), an even number of them."""
    if not _HEX.fullmatch(value):
        return "must contain hexadecimal digits only"
    if len(value) % 2:
        return "must have an even number of hexadecimal digits"
    return _length(len(value), min_length, max_length, "hexadecimal digits", "value")


def check_country(value: str) -> str | None:
    """ISO 3166-1 alpha-2 code."""
    if not _COUNTRY.fullmatch(value):
        return "country must be an ISO 3166-1 alpha-2 code (2 upper-case letters)"
    return None


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def check_base64(
    value: str, min_length: int | None = None, max_length: int | None = None
) -> str | None:
    """Standard base64 (RFC 4648 §4); lengths count decoded bytes."""
    raw = _b64(value)
    if raw is None:
        return "not valid base64 (RFC 4648)"
    return _length(len(raw), min_length, max_length, "bytes", "decoded value")


_PBM = re.compile(rb"P4(?:\s|#[^\n]*\n)+([0-9]+)(?:\s|#[^\n]*\n)+([0-9]+)\s")


def decode_pbm(raw: bytes) -> tuple[int, int, bytes] | None:
    """(width, height, packed rows) of a binary PBM (Netpbm P4), or None if it is not one."""
    m = _PBM.match(raw)
    if not m:
        return None
    w, h = int(m.group(1)), int(m.group(2))
    body = raw[m.end() :]
    if w == 0 or h == 0 or len(body) != (w + 7) // 8 * h:
        return None
    return w, h, body


def check_photo(
    value: str, min_length: int | None = None, max_length: int | None = None
) -> str | None:
    """A black-and-white photo: base64 of a binary PBM (P4), 16 to 1024 pixels a side."""
    raw = _b64(value)
    if raw is None:
        return "photo is not valid base64 (RFC 4648)"
    pbm = decode_pbm(raw)
    if pbm is None:
        return "photo is not a black-and-white binary PBM image (P4)"
    w, h, _ = pbm
    if not (16 <= w <= 1024 and 16 <= h <= 1024):
        return f"photo is {w}x{h} pixels; each side must be 16 to 1024"
    return _length(len(raw), min_length, max_length, "bytes", "photo")


# -- postal codes and presort -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostalRule:
    """A country's postal-code format and how it splits into (region, local) for presort."""

    pattern: re.Pattern[str]
    """Full match against the normalized code."""
    description: str
    """Format in words, used in the error message."""
    split: Callable[[str], tuple[str, str]]
    """Normalized code -> (regional code, local code)."""
    normalize: Callable[[str], str] = field(default=lambda s: s)
    """Canonical spelling (e.g. insert the space of a GB postcode)."""


def _prefix(n: int) -> Callable[[str], tuple[str, str]]:
    return lambda s: (s[:n], s[n:].replace(" ", "").replace("-", ""))


def _gb_norm(s: str) -> str:
    s = s.replace(" ", "")
    return f"{s[:-3]} {s[-3:]}" if len(s) > 3 else s


def _gb_split(s: str) -> tuple[str, str]:
    area = _LETTERS.match(s)
    a = area.group(0) if area else ""
    return a, s[len(a) :].replace(" ", "")


def _nl_norm(s: str) -> str:
    s = s.replace(" ", "")
    return f"{s[:4]} {s[4:]}" if len(s) == 6 else s


DEFAULT_POSTAL_RULES: Mapping[str, PostalRule] = {
    # Deutsche Post: 5 digits; the first two are the Leitregion.
    "DE": PostalRule(re.compile(r"[0-9]{5}"), "5 digits", _prefix(2)),
    # La Poste: 5 digits; the first two are the departement.
    "FR": PostalRule(re.compile(r"[0-9]{5}"), "5 digits", _prefix(2)),
    # Royal Mail: outward code (area letters + district) and inward code.
    "GB": PostalRule(
        re.compile(r"(?:[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][ABD-HJLNP-UW-Z]{2}|GIR 0AA)"),
        "outward code, a space and inward code, e.g. SW1A 1AA",
        _gb_split,
        _gb_norm,
    ),
    # USPS: ZIP or ZIP+4; the first three digits are the sectional center facility.
    "US": PostalRule(
        re.compile(r"[0-9]{5}(?:-[0-9]{4})?"),
        "ZIP code, 5 digits or ZIP+4 (12345-6789)",
        _prefix(3),
    ),
    # PostNL: 4 digits (no leading 0), a space, 2 letters (SA, SD, SS are not used).
    "NL": PostalRule(
        re.compile(r"[1-9][0-9]{3} (?!SA|SD|SS)[A-Z]{2}"),
        "4 digits, a space and 2 letters, e.g. 1012 AB",
        _prefix(2),
        _nl_norm,
    ),
    "AT": PostalRule(re.compile(r"[1-9][0-9]{3}"), "4 digits", _prefix(1)),
    "CH": PostalRule(re.compile(r"[1-9][0-9]{3}"), "4 digits", _prefix(1)),
    "BE": PostalRule(re.compile(r"[1-9][0-9]{3}"), "4 digits", _prefix(1)),
    "IT": PostalRule(re.compile(r"[0-9]{5}"), "5 digits", _prefix(2)),
    "ES": PostalRule(
        re.compile(r"(?:0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}"), "5 digits (01 to 52 first)", _prefix(2)
    ),
}
"""Postal rules by ISO 3166-1 alpha-2 country; pass your own mapping to extend them."""

_GENERIC = PostalRule(
    re.compile(r"[A-Z0-9][A-Z0-9 \-]{1,9}"), "2 to 10 letters or digits", _prefix(2)
)


def normalize_postal_code(
    value: str, country: str, rules: Mapping[str, PostalRule] = DEFAULT_POSTAL_RULES
) -> str:
    """Upper-case, trimmed, single-spaced, in the country's canonical spelling."""
    rule = rules.get(country, _GENERIC)
    return rule.normalize(_WHITESPACE.sub(" ", value.strip().upper()))


def check_postal_code(
    value: str, country: str, rules: Mapping[str, PostalRule] = DEFAULT_POSTAL_RULES
) -> str | None:
    """The postal code matches its country's rule (codes without a rule: 2-10 alphanumerics)."""
    rule = rules.get(country, _GENERIC)
    if value != value.strip() or not rule.pattern.fullmatch(
        normalize_postal_code(value, country, rules)
    ):
        name = f"{country} " if country in rules else ""
        return f"not a valid {name}postal code ({rule.description})"
    return None


def presort_key(
    country: str, postal_code: str, rules: Mapping[str, PostalRule] = DEFAULT_POSTAL_RULES
) -> tuple[str, str, str]:
    """Sort key for postal presort: (country, regional code, local code).

    Producing cards in this order yields mail already grouped the way the postal
    operator sorts it: a regional code followed by a local code (DE Leitregion,
    FR departement, GB postcode area, US sectional center, NL region).
    """
    rule = rules.get(country, _GENERIC)
    region, local = rule.split(normalize_postal_code(postal_code, country, rules))
    return country, region, local


# -- dispatch by profile rule -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What validation depends on besides the value: the date and the postal rules."""

    today: date
    postal_rules: Mapping[str, PostalRule] = field(default_factory=lambda: DEFAULT_POSTAL_RULES)


def _postal(
    spec: InputField, value: str, record: Mapping[str, str], ctx: ValidationContext
) -> str | None:
    country = record.get(spec.country_field or "", "")
    if check_country(country) is not None:
        return None  # the country field reports its own problem
    return check_postal_code(value, country, ctx.postal_rules)


_Validator = Callable[[InputField, str, Mapping[str, str], ValidationContext], str | None]

_VALIDATORS: dict[FieldRule, _Validator] = {
    FieldRule.PAN: lambda spec, v, r, ctx: check_pan(
        v, spec.min_length or 12, spec.max_length or 19
    ),
    FieldRule.EXPIRY: lambda spec, v, r, ctx: check_expiry(v, ctx.today),
    FieldRule.ICCID: lambda spec, v, r, ctx: check_iccid(v),
    FieldRule.IMSI: lambda spec, v, r, ctx: check_imsi(v),
    FieldRule.EMBOSS: lambda spec, v, r, ctx: check_emboss(v, EmbossArea.NAME, spec.max_length),
    FieldRule.NAME: lambda spec, v, r, ctx: check_name(v, spec.min_length or 1, spec.max_length),
    FieldRule.POSTAL_CODE: _postal,
    FieldRule.COUNTRY: lambda spec, v, r, ctx: check_country(v),
    FieldRule.DIGITS: lambda spec, v, r, ctx: check_digits(v, spec.min_length, spec.max_length),
    FieldRule.HEX: lambda spec, v, r, ctx: check_hex(v, spec.min_length, spec.max_length),
    FieldRule.BASE64: lambda spec, v, r, ctx: check_base64(v, spec.min_length, spec.max_length),
    FieldRule.PHOTO: lambda spec, v, r, ctx: check_photo(v, spec.min_length, spec.max_length),
}


def _text(
    spec: InputField, value: str, record: Mapping[str, str], ctx: ValidationContext
) -> str | None:
    return check_text(value, spec.min_length, spec.max_length)


def validate_value(
    spec: InputField, value: str, record: Mapping[str, str], ctx: ValidationContext
) -> str | None:
    """Check one non-empty value against its profile field rule (any other rule: text)."""
    return _VALIDATORS.get(spec.rule, _text)(spec, value, record, ctx)
