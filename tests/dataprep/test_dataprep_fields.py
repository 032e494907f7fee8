"""Field validators: each accepts good values and rejects bad ones with its exact reason."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date

import pytest

from cardperso.dataprep import fields as F
from cardperso.dataprep.text import render, transliterate
from cardperso.profiles.schema import EmbossArea

TODAY = date(2026, 3, 15)
ICCID20 = "89490010000000000013"
PBM16 = base64.b64encode(b"P4\n16 16\n" + bytes([0xF0, 0x0F] * 16)).decode()

GOOD: list[tuple[Callable[..., str | None], tuple[object, ...]]] = [
    (F.check_pan, ("4761739001010010",)),
    (F.check_pan, ("4000000000006",)),  # 13 digits
    (F.check_pan, ("6759649826438453",)),
    (F.check_luhn, ("79927398713",)),  # the classic Luhn example
    (F.check_expiry, ("2603", TODAY)),  # this month is still valid
    (F.check_expiry, ("4603", TODAY)),  # exactly 20 years ahead
    (F.check_iccid, ("8988211000000430010",)),  # pySim EF.ICCID vector
    (F.check_iccid, (ICCID20,)),  # 20 digits
    (F.check_imsi, ("228062800000208",)),
    (F.check_emboss, ("JUERGEN MUELLER",)),
    (F.check_emboss, ("O'BRIEN & SONS, LTD./UK-2",)),
    (F.check_emboss, ("4761 7390 0101 0010", EmbossArea.NUMBER)),
    (F.check_emboss, ("A" * 27,)),
    (F.check_name, ("Jürgen",)),
    (F.check_name, ("O'Brien-Smith Jr.",)),
    (F.check_name, ("Åsa Ødegård",)),
    (F.check_name, ("Владимир",)),
    (F.check_text, ("Hauptstraße 5, 2. OG",)),
    (F.check_digits, ("0042", 4, 4)),
    (F.check_hex, ("00ff", 4, 4)),
    (F.check_country, ("DE",)),
    (F.check_base64, ("AAEC", 3, 3)),
    (F.check_photo, (PBM16,)),
    (F.check_postal_code, ("10115", "DE")),
    (F.check_postal_code, ("01067", "DE")),
    (F.check_postal_code, ("75005", "FR")),
    (F.check_postal_code, ("SW1A 1AA", "GB")),
    (F.check_postal_code, ("M1 1AE", "GB")),
    (F.check_postal_code, ("EC1A 1BB", "GB")),
    (F.check_postal_code, ("sw1a1aa", "GB")),  # normalized
    (F.check_postal_code, ("GIR 0AA", "GB")),
    (F.check_postal_code, ("60601", "US")),
    (F.check_postal_code, ("60601-1234", "US")),
    (F.check_postal_code, ("1012 AB", "NL")),
    (F.check_postal_code, ("1012AB", "NL")),
    (F.check_postal_code, ("1010", "AT")),
    (F.check_postal_code, ("ABC-123", "ZZ")),  # no rule: generic
]


@pytest.mark.parametrize("fn,args", GOOD, ids=[f"{f.__name__}{a[:1]}" for f, a in GOOD])
def test_good_values_pass(fn: Callable[..., str | None], args: tuple[object, ...]) -> None:
    assert fn(*args) is None


BAD: list[tuple[Callable[..., str | None], tuple[object, ...], str]] = [
    (F.check_pan, ("4761739001010011",), "PAN fails the Luhn check (ISO/IEC 7812-1 Annex B)"),
    (F.check_pan, ("47617390010",), "PAN must be 12 to 19 digits (got 11)"),
    (F.check_pan, ("47617390010100100000",), "PAN must be 12 to 19 digits (got 20)"),
    (F.check_pan, ("4761739001010010", 16, 16), None),
    (F.check_pan, ("476173900101001", 16, 16), "PAN must be 16 digits (got 15)"),
    (F.check_pan, ("4761-7390-0101-0010",), "PAN must contain digits only"),
    (F.check_pan, ("４７６１７３９００１０１００１０",), "PAN must contain digits only"),
    (F.check_luhn, ("79927398710",), "number fails the Luhn check (ISO/IEC 7812-1 Annex B)"),
    (F.check_expiry, ("2602", TODAY), "card would be expired: expiry is before 2026-03"),
    (F.check_expiry, ("2600", TODAY), "expiry month must be 01 to 12"),
    (F.check_expiry, ("2613", TODAY), "expiry month must be 01 to 12"),
    (F.check_expiry, ("260", TODAY), "expiry must be YYMM (4 digits)"),
    (F.check_expiry, ("03/28", TODAY), "expiry must be YYMM (4 digits)"),
    (F.check_expiry, ("4604", TODAY), "expiry is more than 20 years ahead"),
    (F.check_iccid, ("898821100000043001",), "ICCID must be 19 or 20 digits (got 18)"),
    (
        F.check_iccid,
        ("8988211000000430011",),
        "ICCID fails the Luhn check (ISO/IEC 7812-1 Annex B)",
    ),
    (
        F.check_iccid,
        ("9988211000000430010",),
        "ICCID must start with 89 (telecommunication, ITU-T E.118)",
    ),
    (F.check_iccid, ("89882110000004300X0",), "ICCID must contain digits only"),
    (F.check_imsi, ("22806280000020",), "IMSI must be 15 digits (got 14)"),
    (
        F.check_imsi,
        ("000062800000208",),
        "IMSI mobile country code 000 is not assigned (3GPP TS 23.003 §2.2)",
    ),
    (F.check_imsi, ("22806280000020A",), "IMSI must contain digits only"),
    (
        F.check_emboss,
        ("JÜRGEN",),
        "position 2 (U+00DC) is not an embossing character for the name line (ISO/IEC 7811-1)",
    ),
    (
        F.check_emboss,
        ("Anna",),
        "position 2 (U+006E) is not an embossing character for the name line (ISO/IEC 7811-1)",
    ),
    (
        F.check_emboss,
        ("A_B",),
        "position 2 (U+005F) is not an embossing character for the name line (ISO/IEC 7811-1)",
    ),
    (F.check_emboss, ("A" * 28,), "embossed line is 28 characters, more than 27 (ISO/IEC 7811-1)"),
    (
        F.check_emboss,
        ("A" * 27, EmbossArea.NAME, 26),
        "embossed line is 27 characters, more than 26 (ISO/IEC 7811-1)",
    ),
    (
        F.check_emboss,
        ("4761 7390 0101 0010 123", EmbossArea.NUMBER),
        "embossed line is 23 characters, more than 19 (ISO/IEC 7811-1)",
    ),
    (
        F.check_emboss,
        ("4761-7390", EmbossArea.NUMBER),
        "position 5 (U+002D) is not an embossing character for the number line (ISO/IEC 7811-1)",
    ),
    (F.check_emboss, ("   ",), "embossed line is empty"),
    (F.check_name, ("-Anna",), "name must start with a letter"),
    (F.check_name, ("",), "name must start with a letter"),
    (
        F.check_name,
        ("Anna2",),
        "position 5 (U+0032) is not a letter, space, hyphen, apostrophe or period",
    ),
    (F.check_name, ("Anna", 1, 3), "name must be 1 to 3 characters (got 4)"),
    (F.check_text, ("a\x00b",), "position 2 (U+0000) is a control or unassigned character"),
    (F.check_text, ("a\u200bb",), "position 2 (U+200B) is a control or unassigned character"),
    (F.check_text, (" Hauptstraße",), "text has leading or trailing spaces"),
    (F.check_text, ("abcd", None, 3), "text must be at most 3 characters (got 4)"),
    (F.check_text, ("ab", 3, None), "text must be at least 3 characters (got 2)"),
    (F.check_digits, ("12a",), "must contain digits only"),
    (F.check_digits, ("123", 4, 4), "value must be 4 digits (got 3)"),
    (F.check_hex, ("0g",), "must contain hexadecimal digits only"),
    (F.check_hex, ("abc",), "must have an even number of hexadecimal digits"),
    (F.check_hex, ("ab", 4, 4), "value must be 4 hexadecimal digits (got 2)"),
    (F.check_country, ("de",), "country must be an ISO 3166-1 alpha-2 code (2 upper-case letters)"),
    (
        F.check_country,
        ("DEU",),
        "country must be an ISO 3166-1 alpha-2 code (2 upper-case letters)",
    ),
    (F.check_base64, ("AAE",), "not valid base64 (RFC 4648)"),
    (F.check_base64, ("AAEC", 4, None), "decoded value must be at least 4 bytes (got 3)"),
    (F.check_photo, ("!!",), "photo is not valid base64 (RFC 4648)"),
    (F.check_photo, ("UDQKMTYgMTYKAAAA",), "photo is not a black-and-white binary PBM image (P4)"),
    (F.check_photo, (PBM16, None, 10), "photo must be at most 10 bytes (got 41)"),
    (F.check_postal_code, ("1011", "DE"), "not a valid DE postal code (5 digits)"),
    (F.check_postal_code, ("101155", "DE"), "not a valid DE postal code (5 digits)"),
    (F.check_postal_code, ("7500A", "FR"), "not a valid FR postal code (5 digits)"),
    (
        F.check_postal_code,
        ("SW1A 1CA", "GB"),
        "not a valid GB postal code (outward code, a space and inward code, e.g. SW1A 1AA)",
    ),
    (
        F.check_postal_code,
        ("6060", "US"),
        "not a valid US postal code (ZIP code, 5 digits or ZIP+4 (12345-6789))",
    ),
    (
        F.check_postal_code,
        ("60601-12", "US"),
        "not a valid US postal code (ZIP code, 5 digits or ZIP+4 (12345-6789))",
    ),
    (
        F.check_postal_code,
        ("0123 AB", "NL"),
        "not a valid NL postal code (4 digits, a space and 2 letters, e.g. 1012 AB)",
    ),
    (
        F.check_postal_code,
        ("1012 SS", "NL"),
        "not a valid NL postal code (4 digits, a space and 2 letters, e.g. 1012 AB)",
    ),
    (F.check_postal_code, (" 10115", "DE"), "not a valid DE postal code (5 digits)"),
    (F.check_postal_code, ("?", "ZZ"), "not a valid postal code (2 to 10 letters or digits)"),
]


@pytest.mark.parametrize(
    "fn,args,reason", BAD, ids=[f"{f.__name__}-{i}" for i, (f, _, _) in enumerate(BAD)]
)
def test_bad_values_give_their_reason(
    fn: Callable[..., str | None], args: tuple[object, ...], reason: str | None
) -> None:
    assert fn(*args) == reason


def test_reasons_never_quote_the_value() -> None:
    for fn, args, reason in BAD:
        value = args[0]
        if reason and isinstance(value, str) and len(value) > 4:
            assert value not in reason, (fn.__name__, value)


@pytest.mark.parametrize(
    "country,code,key",
    [
        ("DE", "10115", ("DE", "10", "115")),
        ("FR", "75005", ("FR", "75", "005")),
        ("GB", "SW1A 1AA", ("GB", "SW", "1A1AA")),
        ("GB", "m11ae", ("GB", "M", "11AE")),
        ("US", "60601-1234", ("US", "606", "011234")),
        ("NL", "1012ab", ("NL", "10", "12AB")),
        ("AT", "1010", ("AT", "1", "010")),
    ],
)
def test_presort_key(country: str, code: str, key: tuple[str, str, str]) -> None:
    assert F.presort_key(country, code) == key


def test_presort_orders_region_then_local() -> None:
    addresses = [
        ("DE", "80331"),
        ("DE", "10115"),
        ("GB", "M1 1AE"),
        ("DE", "10117"),
        ("GB", "B1 1AA"),
    ]
    ordered = sorted(addresses, key=lambda a: F.presort_key(*a))
    assert ordered == [
        ("DE", "10115"),
        ("DE", "10117"),
        ("DE", "80331"),
        ("GB", "B1 1AA"),
        ("GB", "M1 1AE"),
    ]


def test_postal_rules_are_configurable() -> None:
    import re

    rules = dict(F.DEFAULT_POSTAL_RULES)
    rules["DK"] = F.PostalRule(re.compile(r"[0-9]{4}"), "4 digits", lambda s: (s[:1], s[1:]))
    assert F.check_postal_code("2100", "DK", rules) is None
    assert F.check_postal_code("21000", "DK", rules) == "not a valid DK postal code (4 digits)"
    assert F.presort_key("DK", "2100", rules) == ("DK", "2", "100")


@pytest.mark.parametrize(
    "text,emboss,track",
    [
        ("Jürgen Müller", "JUERGEN MUELLER", "JUERGEN MUELLER"),
        ("François Lefèvre", "FRANCOIS LEFEVRE", "FRANCOIS LEFEVRE"),
        ("Åsa Ødegård", "AASA OEDEGAARD", "AASA OEDEGAARD"),
        ("Siobhán O'Brien", "SIOBHAN O'BRIEN", "SIOBHAN OBRIEN"),
        ("Straße", "STRASSE", "STRASSE"),
        ("Yılmaz", "YILMAZ", "YILMAZ"),
        ("Zoë  (Jr)", "ZOE JR", "ZOE JR"),
    ],
)
def test_transliteration(text: str, emboss: str, track: str) -> None:
    from cardperso.dataprep.text import TRACK1_NAME_CHARS

    assert transliterate(text) == emboss
    assert transliterate(text, TRACK1_NAME_CHARS) == track


def test_template_filters() -> None:
    v = {"pan": "4761739001010010", "expiry": "2802", "given": "Léa", "family": "D'Amico"}
    assert render("{pan|group4}", v) == "4761 7390 0101 0010"
    assert render("VALID THRU {expiry|mmyy}", v) == "VALID THRU 02/28"
    assert render("{expiry|yymmdd}", v) == "280229"  # 2028 is a leap year
    assert render("{family|track}/{given|track}", v) == "DAMICO/LEA"
    assert render("{given|initial|upper}. {family|emboss}", v) == "L. D'AMICO"
    assert render("{{literal}} {missing}", v) == "{literal} "


def test_check_luhn_agrees_with_the_payments_luhn() -> None:
    """check_luhn computes the check in C where it can; it must say what luhn_valid says."""
    import random

    from cardperso.payments._digits import luhn_valid

    rng = random.Random(7812)
    samples = ["", "0", "00", "18", "79927398713", "1" * 65, "1" * 66, "٣٤", "12a4", " 18"]
    samples += ["".join(rng.choices("0123456789", k=rng.randint(2, 66))) for _ in range(20000)]
    for digits in samples:
        assert (F.check_luhn(digits) is None) == luhn_valid(digits), digits


def test_transliterate_ascii_and_unicode_paths() -> None:
    """ASCII text takes a short path (and results are remembered): both must give what
    the character-by-character rule gives."""
    import re
    import unicodedata

    from cardperso.dataprep.text import _ICAO, EMBOSS_NAME_CHARS, TRACK1_NAME_CHARS

    def reference(text: str, allowed: frozenset[str]) -> str:
        out: list[str] = []
        for ch in text.upper():
            mapped = _ICAO.get(ch)
            if mapped is None:
                decomposed = unicodedata.normalize("NFKD", ch)
                mapped = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
            out.extend(c for c in mapped if c in allowed)
        return re.sub(r" {2,}", " ", "".join(out)).strip()

    texts = ["o'brien-smith  jr.", "  Anne   Marie ", "a&b,c/d", "x\ty", "Zoë  Ægir", "Łódź"]
    for text in texts:
        for allowed in (EMBOSS_NAME_CHARS, TRACK1_NAME_CHARS):
            assert transliterate(text, allowed) == reference(text, allowed)
            assert transliterate(text, allowed) == reference(text, allowed)  # remembered
