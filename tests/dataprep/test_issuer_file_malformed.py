"""The malformed-input suite: one defect per file, each with its exact message.

Every case builds a small issuer file from hand-written good records, breaks one
thing, and checks the one line the operator sees (file, line, field, reason).
Record-level defects are also run under the set-aside policy: the bad record is
set aside with the same message and every other record passes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from dataprep_samples import TODAY, copy_records, header, render_csv, render_jsonl

from cardperso.dataprep.issuer_file import Policy, scan_issuer_file
from cardperso.errors import InputError

Records = list[dict[str, Any]]


@dataclass
class Case:
    id: str
    profile: str
    fmt: str
    expected: str
    records: Callable[[Records], None] | None = None
    head: dict[str, Any] = field(default_factory=dict)
    columns: Callable[[list[str]], list[str]] | None = None
    raw: Callable[[bytes], bytes] | None = None
    record_level: bool = True
    count_delta: int = 0


def _set(i: int, key: str, value: Any) -> Callable[[Records], None]:
    def f(rs: Records) -> None:
        rs[i][key] = value

    return f


def _drop(i: int, key: str) -> Callable[[Records], None]:
    def f(rs: Records) -> None:
        del rs[i][key]

    return f


def _build(c: Case) -> bytes:
    records = copy_records(c.profile)
    if c.records:
        c.records(records)
    head = header(c.profile, len(records) + c.count_delta, c.head)
    if c.fmt == "jsonl":
        data = render_jsonl(head, records)
    else:
        cols = list(copy_records(c.profile)[0])
        if c.columns:
            cols = c.columns(cols)
        data = render_csv(head, records, cols)
    return c.raw(data) if c.raw else data


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def f(data: bytes) -> bytes:
        assert old in data
        return data.replace(old, new, 1)

    return f


def _line(n: int, text: bytes) -> Callable[[bytes], bytes]:
    def f(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[n - 1] = text
        return b"\n".join(lines)

    return f


HEADER_HINT = (
    "first line must be the header comment '# format=cardperso-issuer/1 issuer=... "
    "batch_id=... profile=... profile_version=... record_count=...'"
)

CASES = [
    # -- payment card numbers ------------------------------------------------------
    Case(
        "luhn",
        "debit",
        "csv",
        "batch.csv:4, field 'pan': PAN fails the Luhn check (ISO/IEC 7812-1 Annex B)",
        _set(1, "pan", "4761739001010029"),
    ),
    Case(
        "pan-length",
        "debit",
        "csv",
        "batch.csv:3, field 'pan': PAN must be 16 digits (got 15)",
        _set(0, "pan", "476173900101001"),
    ),
    Case(
        "pan-not-digits",
        "debit",
        "jsonl",
        "batch.jsonl:2, field 'pan': PAN must contain digits only",
        _set(0, "pan", "4761 7390 0101 0010"),
    ),
    Case(
        "expiry-past",
        "debit",
        "csv",
        "batch.csv:5, field 'expiry': card would be expired: expiry is before 2026-03",
        _set(2, "expiry", "2602"),
    ),
    Case(
        "expiry-month",
        "debit",
        "csv",
        "batch.csv:3, field 'expiry': expiry month must be 01 to 12",
        _set(0, "expiry", "2913"),
    ),
    Case(
        "expiry-format",
        "debit",
        "jsonl",
        "batch.jsonl:2, field 'expiry': expiry must be YYMM (4 digits)",
        _set(0, "expiry", "12/28"),
    ),
    Case(
        "expiry-too-far",
        "debit",
        "csv",
        "batch.csv:3, field 'expiry': expiry is more than 20 years ahead",
        _set(0, "expiry", "4801"),
    ),
    # -- embossing -----------------------------------------------------------------
    Case(
        "emboss-charset",
        "debit",
        "csv",
        "batch.csv:3, field 'embossed_name': position 2 (U+00DC) is not an embossing "
        "character for the name line (ISO/IEC 7811-1)",
        _set(0, "embossed_name", "JÜRGEN MÜLLER"),
    ),
    Case(
        "emboss-lowercase",
        "debit",
        "jsonl",
        "batch.jsonl:3, field 'embossed_name': position 2 (U+0069) is not an embossing "
        "character for the name line (ISO/IEC 7811-1)",
        _set(1, "embossed_name", "Siobhan O'Brien"),
    ),
    Case(
        "emboss-length",
        "debit",
        "csv",
        "batch.csv:3, field 'embossed_name': embossed line is 27 characters, "
        "more than 26 (ISO/IEC 7811-1)",
        _set(0, "embossed_name", "MAXIMILIAN ALEXANDER MUELLE"),
    ),
    Case(
        "engraved-too-long",
        "employee",
        "csv",
        "batch.csv:3, field 'given_name': engraved text is 31 characters, more than 30",
        _set(0, "given_name", "Maximiliane Friederike"),
    ),
    # -- names, text and addresses -------------------------------------------------
    Case(
        "name-digit",
        "debit",
        "csv",
        "batch.csv:3, field 'family_name': position 3 (U+0033) is not a letter, space, "
        "hyphen, apostrophe or period",
        _set(0, "family_name", "Mü3ller"),
    ),
    Case(
        "text-control-char",
        "debit",
        "jsonl",
        "batch.jsonl:2, field 'address_line1': position 12 (U+0009) is a control or "
        "unassigned character",
        _set(0, "address_line1", "Hauptstraße\t5"),
    ),
    Case(
        "text-too-long",
        "debit",
        "csv",
        "batch.csv:3, field 'city': text must be at most 30 characters (got 31)",
        _set(0, "city", "Frankfurt am Main-Niederrad-Ost"),
    ),
    Case(
        "required-empty",
        "debit",
        "csv",
        "batch.csv:4, field 'city': required field is empty",
        _set(1, "city", ""),
    ),
    Case(
        "postal-de",
        "debit",
        "csv",
        "batch.csv:3, field 'postal_code': not a valid DE postal code (5 digits)",
        _set(0, "postal_code", "1011"),
    ),
    Case(
        "postal-gb",
        "debit",
        "csv",
        "batch.csv:4, field 'postal_code': not a valid GB postal code (outward code, a space "
        "and inward code, e.g. SW1A 1AA)",
        _set(1, "postal_code", "SW1A 1"),
    ),
    Case(
        "postal-nl",
        "debit",
        "jsonl",
        "batch.jsonl:4, field 'postal_code': not a valid NL postal code (4 digits, a space "
        "and 2 letters, e.g. 1012 AB)",
        _set(2, "postal_code", "1012 SA"),
    ),
    Case(
        "postal-us",
        "sim",
        "csv",
        "batch.csv:4, field 'postal_code': not a valid US postal code (ZIP code, 5 digits "
        "or ZIP+4 (12345-6789))",
        _set(1, "postal_code", "6060"),
    ),
    Case(
        "country",
        "debit",
        "csv",
        "batch.csv:3, field 'country': country must be an ISO 3166-1 alpha-2 code "
        "(2 upper-case letters)",
        _set(0, "country", "Deutschland"),
    ),
    # -- SIM identifiers and keys --------------------------------------------------
    Case(
        "iccid-prefix",
        "sim",
        "jsonl",
        "batch.jsonl:2, field 'iccid': ICCID must start with 89 (telecommunication, ITU-T E.118)",
        _set(0, "iccid", "8849001000000000017"),
    ),
    Case(
        "iccid-length",
        "sim",
        "csv",
        "batch.csv:3, field 'iccid': ICCID must be 19 or 20 digits (got 18)",
        _set(0, "iccid", "894900100000000001"),
    ),
    Case(
        "iccid-luhn",
        "sim",
        "csv",
        "batch.csv:4, field 'iccid': ICCID fails the Luhn check (ISO/IEC 7812-1 Annex B)",
        _set(1, "iccid", "8949001000000000026"),
    ),
    Case(
        "imsi-length",
        "sim",
        "csv",
        "batch.csv:3, field 'imsi': IMSI must be 15 digits (got 14)",
        _set(0, "imsi", "00101000000001"),
    ),
    Case(
        "imsi-mcc",
        "sim",
        "jsonl",
        "batch.jsonl:3, field 'imsi': IMSI mobile country code 000 is not assigned "
        "(3GPP TS 23.003 §2.2)",
        _set(1, "imsi", "000010000000002"),
    ),
    Case(
        "ki-length",
        "sim",
        "csv",
        "batch.csv:3, field 'ki': value must be 32 hexadecimal digits (got 30)",
        _set(0, "ki", "000102030405060708090A0B0C0D0E"),
    ),
    Case(
        "opc-not-hex",
        "sim",
        "csv",
        "batch.csv:4, field 'opc': must contain hexadecimal digits only",
        _set(1, "opc", "E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEG"),
    ),
    # -- employee card -------------------------------------------------------------
    Case(
        "staff-number",
        "employee",
        "csv",
        "batch.csv:3, field 'staff_number': must contain digits only",
        _set(0, "staff_number", "E1000001"),
    ),
    Case(
        "photo-not-pbm",
        "employee",
        "jsonl",
        "batch.jsonl:2, field 'photo': photo is not a black-and-white binary PBM image (P4)",
        _set(0, "photo", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"),
    ),
    Case(
        "photo-not-base64",
        "employee",
        "csv",
        "batch.csv:3, field 'photo': photo is not valid base64 (RFC 4648)",
        _set(0, "photo", "P4 16 16 not base64!"),
    ),
    # -- duplicates within the batch -----------------------------------------------
    Case(
        "duplicate-pan",
        "debit",
        "csv",
        "batch.csv:5, field 'pan': duplicate value: same pan as line 3",
        _set(2, "pan", "4761739001010010"),
    ),
    Case(
        "duplicate-iccid",
        "sim",
        "jsonl",
        "batch.jsonl:3, field 'iccid': duplicate value: same iccid as line 2",
        _set(1, "iccid", "8949001000000000017"),
    ),
    Case(
        "duplicate-imsi",
        "sim",
        "csv",
        "batch.csv:4, field 'imsi': duplicate value: same imsi as line 3",
        _set(1, "imsi", "001010000000001"),
    ),
    # -- structure -----------------------------------------------------------------
    Case(
        "jsonl-missing-field",
        "debit",
        "jsonl",
        "batch.jsonl:3, field 'city': missing field",
        _drop(1, "city"),
    ),
    Case(
        "jsonl-extra-field",
        "debit",
        "jsonl",
        "batch.jsonl:2, field 'colour': unexpected field (not a field of the profile)",
        _set(0, "colour", "blue"),
    ),
    Case(
        "jsonl-number-not-string",
        "debit",
        "jsonl",
        "batch.jsonl:2, field 'pan': value must be a JSON string (quote numbers to keep "
        "leading zeros)",
        _set(0, "pan", 4761739001010010),
    ),
    Case(
        "jsonl-not-json",
        "debit",
        "jsonl",
        "batch.jsonl:3: record is not valid JSON (Expecting value at column 1)",
        raw=_line(3, b"pan=4761739001010028"),
    ),
    Case(
        "jsonl-not-object",
        "debit",
        "jsonl",
        "batch.jsonl:4: record must be a JSON object",
        raw=_line(4, b'["4761739001010036", "3006"]'),
    ),
    Case(
        "jsonl-empty-line",
        "debit",
        "jsonl",
        "batch.jsonl:2: empty line",
        raw=_replace(b"}\n{", b"}\n\n{"),
        record_level=False,
    ),
    Case(
        "csv-missing-column",
        "debit",
        "csv",
        "batch.csv:2, field 'city': missing column",
        columns=lambda cols: [c for c in cols if c != "city"],
        record_level=False,
    ),
    Case(
        "csv-extra-column",
        "debit",
        "csv",
        "batch.csv:2, field 'colour': unexpected column (not a field of the profile)",
        columns=lambda cols: [*cols, "colour"],
        record_level=False,
    ),
    Case(
        "csv-duplicate-column",
        "debit",
        "csv",
        "batch.csv:2, field 'city': column appears twice",
        columns=lambda cols: [*cols, "city"],
        record_level=False,
    ),
    Case(
        "csv-value-count",
        "debit",
        "csv",
        "batch.csv:4: expected 10 values, found 9",
        raw=_replace(b",Flat 2,", b","),
    ),
    # -- counts and header ---------------------------------------------------------
    Case(
        "count-too-high",
        "debit",
        "csv",
        "batch.csv:1, field 'record_count': header says 4 records, the file has 3",
        count_delta=1,
        record_level=False,
    ),
    Case(
        "count-too-low",
        "sim",
        "jsonl",
        "batch.jsonl:1, field 'record_count': header says 1 records, the file has 2",
        count_delta=-1,
        record_level=False,
    ),
    Case(
        "count-not-number",
        "debit",
        "csv",
        "batch.csv:1, field 'record_count': must be a whole number",
        head={"record_count": "three"},
        record_level=False,
    ),
    Case(
        "unknown-profile",
        "debit",
        "jsonl",
        "batch.jsonl:1, field 'profile': unknown profile 'credit' (known: debit, employee, sim)",
        head={"profile": "credit"},
        record_level=False,
    ),
    Case(
        "profile-version",
        "debit",
        "jsonl",
        "batch.jsonl:1, field 'profile': profile 'debit' version 2 is not available "
        "(have version 1)",
        head={"profile_version": 2},
        record_level=False,
    ),
    Case(
        "header-missing-field",
        "sim",
        "jsonl",
        "batch.jsonl:1, field 'batch_id': header field missing",
        raw=_replace(b'"batch_id": "B0001", ', b""),
        record_level=False,
    ),
    Case(
        "header-format",
        "debit",
        "jsonl",
        "batch.jsonl:1, field 'format': unsupported file format (expected cardperso-issuer/1)",
        head={"format": "acme-perso/7"},
        record_level=False,
    ),
    Case(
        "header-not-json",
        "debit",
        "jsonl",
        "batch.jsonl:1: header is not valid JSON (Expecting value at column 12)",
        raw=_line(1, b'{"format": '),
        record_level=False,
    ),
    Case(
        "csv-no-header",
        "debit",
        "csv",
        f"batch.csv:1: {HEADER_HINT}",
        raw=lambda d: d.split(b"\n", 1)[1],
        record_level=False,
    ),
    # -- encoding ------------------------------------------------------------------
    Case(
        "latin1-not-utf8",
        "debit",
        "csv",
        "batch.csv:3, field 'given_name': not valid UTF-8 (byte 0xFC at position 40 of the line)",
        raw=_replace("Jürgen".encode(), "Jürgen".encode("latin-1")),
    ),
    Case(
        "utf16-file",
        "debit",
        "csv",
        "batch.csv:1: file is UTF-16 (byte-order mark FF FE); issuer files must be UTF-8",
        raw=lambda d: d.decode("utf-8").encode("utf-16"),
        record_level=False,
    ),
]


def _scan(data: bytes, fmt: str, policy: Policy = Policy.REFUSE) -> Any:
    return scan_issuer_file(io.BytesIO(data), name=f"batch.{fmt}", today=TODAY, policy=policy)


def test_suite_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.expected for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "profile,fmt", [(p, f) for p in ("debit", "sim", "employee") for f in ("csv", "jsonl")]
)
def test_good_samples_pass(profile: str, fmt: str) -> None:
    data = _build(Case("good", profile, fmt, ""))
    result = _scan(data, fmt)
    assert result.records == result.accepted == len(copy_records(profile))
    assert result.report.total_problems == 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_defect_refuses_the_file_with_its_exact_message(case: Case) -> None:
    with pytest.raises(InputError) as err:
        _scan(_build(case), case.fmt)
    assert str(err.value) == case.expected


RECORD_CASES = [c for c in CASES if c.record_level]


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
def test_record_defect_is_set_aside(case: Case) -> None:
    result = _scan(_build(case), case.fmt, Policy.SET_ASIDE)
    assert result.report.lines() == [case.expected]
    assert result.report.records_set_aside == 1
    assert result.accepted == result.records - 1
