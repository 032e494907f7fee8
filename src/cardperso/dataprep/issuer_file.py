"""Issuer data files: streaming intake of CSV and JSON Lines with one error per problem.

File format (UTF-8; a leading UTF-8 byte-order mark is ignored; LF or CRLF lines)
-------------------------------------------------------------------------------
Both formats start with the batch header: ``format`` (always
``cardperso-issuer/1``), ``issuer``, ``batch_id``, ``profile``, ``profile_version``
and ``record_count`` (the number of records that follow).

JSON Lines (``.jsonl``): line 1 is the header as a JSON object; every further line
is one record, a JSON object whose keys are the profile's input fields and whose
values are strings (numbers would lose leading zeros)::

    {"format": "cardperso-issuer/1", "issuer": "ACME-BANK", "batch_id": "B0001",
     "profile": "debit", "profile_version": 1, "record_count": 2}
    {"pan": "4761739001010010", "expiry": "2812", ...}
    {"pan": "4761739001010028", "expiry": "2901", ...}

CSV (``.csv``, RFC 4180 quoting): line 1 is the header as a comment of
space-separated ``key=value`` pairs (values of ``A-Z a-z 0-9 . _ / -``), line 2
names the columns (any order; an optional field's column may be left out), then
one record per row (the header line below is cut short here; it ends ``record_count=2``)::

    # format=cardperso-issuer/1 issuer=ACME batch_id=B1 profile=debit profile_version=1 ...
    pan,expiry,embossed_name,...
    4761739001010010,2812,JOHN SMITH,...

Line numbers in messages are physical lines counted from 1 (a CSV record with a
quoted line break is reported at the line where it starts).

Checks and policy
-----------------
Every problem is an :class:`~cardperso.errors.InputError` naming file, line and
field: text that is not UTF-8, a missing or unknown field or column, an empty
required value, a value breaking its field rule (:mod:`cardperso.dataprep.fields`),
an embossed line the card cannot carry, a value that must be unique repeated
within the batch, a header that does not match the records (count, profile).
Policy :attr:`Policy.REFUSE` (default) refuses the whole file if anything is wrong
(:class:`BatchRefused`, carrying the full :class:`ExceptionReport`);
:attr:`Policy.SET_ASIDE` passes the good records and lists the bad ones in the
exception report. Header problems and a wrong record count refuse the file under
either policy: they mean the file itself is not what the issuer meant to send.

Memory
------
Records are read one line at a time and handed on; nothing keeps them. The only
state that grows with the file is the :class:`~cardperso.dataprep.digestset.DigestSet`
of unique-field digests (30 to 60 bytes per record: 16 bytes of SHA-256 and a
4-byte line number per slot), plus at most ``max_listed`` problems in the report.
A single line longer than :data:`MAX_LINE` bytes is refused rather than read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from cardperso.dataprep.cardbody import check_card_body
from cardperso.dataprep.digestset import DigestSet
from cardperso.dataprep.fields import ValidationContext, validate_value
from cardperso.errors import ConfigError, InputError
from cardperso.profiles.loader import list_builtin, load_builtin
from cardperso.profiles.schema import Profile

__all__ = [
    "FORMAT_ID",
    "MAX_LINE",
    "BatchHeader",
    "BatchRefused",
    "ExceptionReport",
    "IssuerFileReader",
    "IssuerRecord",
    "Policy",
    "ProfileResolver",
    "ScanResult",
    "builtin_resolver",
    "detect_format",
    "scan_issuer_file",
]

FORMAT_ID = "cardperso-issuer/1"
MAX_LINE = 1 << 20
"""Longest line read (bytes); a longer one is refused, so memory stays bounded."""

_HEADER_KEYS = ("format", "issuer", "batch_id", "profile", "profile_version", "record_count")
_TOKEN = re.compile(r"[A-Za-z0-9._/\-]{1,64}")


class Policy(StrEnum):
    """What a bad record does to its batch."""

    REFUSE = "refuse"
    """Any problem refuses the whole file (default)."""
    SET_ASIDE = "set_aside"
    """Bad records are set aside in the exception report; good ones go on."""


ProfileResolver = Callable[[str, int], Profile]
"""(profile id, version) -> Profile; raises LookupError with a reason if unknown."""


def builtin_resolver(name: str, version: int) -> Profile:
    """Resolve the header's profile among the built-in profiles."""
    if name not in list_builtin():
        raise LookupError(f"unknown profile {name!r} (known: {', '.join(list_builtin())})")
    profile = load_builtin(name)
    if profile.version != version:
        raise LookupError(
            f"profile {name!r} version {version} is not available (have version {profile.version})"
        )
    return profile


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The first line of an issuer file."""

    issuer: str
    batch_id: str
    profile: str
    profile_version: int
    record_count: int
    format: str = FORMAT_ID

    def as_dict(self) -> dict[str, str | int]:
        return {k: getattr(self, k) for k in _HEADER_KEYS}

    def jsonl_line(self) -> str:
        return json.dumps(self.as_dict(), separators=(", ", ": "))

    def csv_line(self) -> str:
        return "# " + " ".join(f"{k}={v}" for k, v in self.as_dict().items())


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """One validated record and the physical line it starts on."""

    line: int
    values: dict[str, str]


@dataclass
class ExceptionReport:
    """Problems found in one file, and how many records were set aside."""

    file: str
    policy: Policy
    max_listed: int = 1000
    problems: list[InputError] = field(default_factory=list)
    total_problems: int = 0
    records_set_aside: int = 0

    def add(self, problem: InputError) -> None:
        self.total_problems += 1
        if len(self.problems) < self.max_listed:
            self.problems.append(problem)

    def lines(self) -> list[str]:
        out = [str(p) for p in self.problems]
        if self.total_problems > len(self.problems):
            out.append(f"... and {self.total_problems - len(self.problems)} more problems")
        return out

    def to_text(self) -> str:
        head = (
            f"exception report for {self.file} (policy {self.policy.value}): "
            f"{self.total_problems} problems, {self.records_set_aside} records set aside"
        )
        return "\n".join([head, *self.lines()]) + "\n"


class BatchRefused(InputError):
    """The whole file is refused; the message is its first problem, ``report`` lists all."""

    def __init__(self, report: ExceptionReport) -> None:
        first = report.problems[0]
        more = report.total_problems - 1
        message = first.reason + (f" (and {more} more problems)" if more > 0 else "")
        super().__init__(message, file=first.file, line=first.line, field=first.field)
        self.report = report


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of reading a whole file."""

    header: BatchHeader
    profile: Profile
    records: int
    accepted: int
    report: ExceptionReport
    sha256: str


def detect_format(name: str, first: bytes) -> str:
    """``"csv"`` or ``"jsonl"`` from the file name, else from the first byte."""
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return "jsonl" if first.lstrip(b"\xef\xbb\xbf").startswith(b"{") else "csv"


class _Lines:
    """Physical lines of a byte stream, decoded; remembers which lines were not UTF-8."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.number = 0
        self.bad: dict[int, str] = {}
        self.sha = hashlib.sha256()

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.stream.readline(MAX_LINE + 1)
            if not raw:
                return
            self.number += 1
            self.sha.update(raw)
            if len(raw) > MAX_LINE:
                raise InputError(
                    f"line is longer than {MAX_LINE} bytes", file=self.name, line=self.number
                )
            if self.number == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InputError(
                        f"file is UTF-16 (byte-order mark {raw[0]:02X} {raw[1]:02X}); "
                        "issuer files must be UTF-8",
                        file=self.name,
                        line=1,
                    )
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.bad[self.number] = (
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02X} at position {e.start + 1} "
                    "of the line)"
                )
                text = raw.decode("utf-8", "replace")
            yield text


def _header_values(raw: Mapping[str, Any], name: str, line: int) -> BatchHeader:
    def err(msg: str, key: str | None = None) -> InputError:
        return InputError(msg, file=name, line=line, field=key)

    for key in raw:
        if key not in _HEADER_KEYS:
            raise err("unknown header field", key)
    for key in _HEADER_KEYS:
        if key not in raw:
            raise err("header field missing", key)
    if raw["format"] != FORMAT_ID:
        raise err(f"unsupported file format (expected {FORMAT_ID})", "format")
    for key in ("issuer", "batch_id", "profile"):
        v = raw[key]
        if not isinstance(v, str) or not _TOKEN.fullmatch(v):
            raise err("must be 1 to 64 characters of A-Z a-z 0-9 . _ / -", key)
    ints: dict[str, int] = {}
    for key in ("profile_version", "record_count"):
        v = raw[key]
        if isinstance(v, str) and v.isascii() and v.isdigit():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise err("must be a whole number", key)
        ints[key] = v
    return BatchHeader(
        issuer=str(raw["issuer"]),
        batch_id=str(raw["batch_id"]),
        profile=str(raw["profile"]),
        profile_version=ints["profile_version"],
        record_count=ints["record_count"],
    )


class IssuerFileReader:
    """Stream the validated records of one issuer file.

    Opening reads the header and resolves its profile (problems there raise an
    ``InputError`` at once). Iterating yields good records with their line numbers.
    Under ``Policy.REFUSE`` iteration stops yielding at the first problem but reads
    on to complete the report, then raises :class:`BatchRefused`; under
    ``Policy.SET_ASIDE`` bad records are skipped and counted in :attr:`report`.
    Either way a wrong record count raises ``BatchRefused`` at the end, so a
    consumer must treat what it received as provisional until iteration finishes
    (or run :func:`scan_issuer_file` first and import on a second pass).

    A path is opened and closed by the reader; a stream is the caller's to close,
    unless ``close_stream`` hands it over (an envelope's decrypting stream).
    """

    def __init__(
        self,
        source: str | Path | IO[bytes],
        *,
        today: date,
        name: str | None = None,
        resolver: ProfileResolver = builtin_resolver,
        policy: Policy = Policy.REFUSE,
        fmt: str | None = None,
        context: ValidationContext | None = None,
        max_listed: int = 1000,
        expected_profile: str | None = None,
        close_stream: bool = False,
    ) -> None:
        if isinstance(source, str | Path):
            self.name = name or Path(source).name
            self._stream: IO[bytes] = open(source, "rb")  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self.name = name or Path(str(getattr(source, "name", "<stream>"))).name
            self._stream = source
            self._owned = close_stream
        self.policy = policy
        self.context = context or ValidationContext(today=today)
        self.report = ExceptionReport(self.name, policy, max_listed)
        self.records = 0
        self.accepted = 0
        self._lines = _Lines(self._stream, self.name)
        self._iter = iter(self._lines)
        try:
            self.header = self._read_header(fmt)
            try:
                self.profile = resolver(self.header.profile, self.header.profile_version)
            except (LookupError, ConfigError) as e:
                msg = e.args[0] if e.args else str(e)
                raise InputError(str(msg), file=self.name, line=1, field="profile") from None
            if expected_profile is not None and self.header.profile != expected_profile:
                raise InputError(
                    f"batch is for profile {self.header.profile!r}, expected {expected_profile!r}",
                    file=self.name,
                    line=1,
                    field="profile",
                )
            self._columns: list[str] | None = None
            if self.format == "csv":
                self._columns = self._read_columns()
        except BaseException:
            self.close()
            raise
        self._specs = {f.name: f for f in self.profile.input.fields}
        self._fields = tuple(self.profile.input.fields)
        self._unique_fields = tuple(self.profile.input.unique)
        self._card_body = self.profile.card_body
        self._unique = DigestSet()
        self._started = False

    # -- plumbing ------------------------------------------------------------
    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def __enter__(self) -> IssuerFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, msg: str, line: int | None, field: str | None = None) -> InputError:
        return InputError(msg, file=self.name, line=line, field=field)

    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes read so far (the whole file after iteration)."""
        return self._lines.sha.hexdigest()

    # -- header --------------------------------------------------------------
    def _next_line(self) -> str | None:
        return next(self._iter, None)

    def _read_header(self, fmt: str | None) -> BatchHeader:
        text = self._next_line()
        if text is None:
            raise self._error("file is empty (no header)", 1)
        self.format = fmt or detect_format(self.name, text[:8].encode("utf-8", "replace"))
        if 1 in self._lines.bad:
            raise self._error(self._lines.bad[1], 1)
        text = text.rstrip("\r\n")
        if self.format == "jsonl":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as e:
                raise self._error(
                    f"header is not valid JSON ({e.msg} at column {e.colno})", 1
                ) from None
            if not isinstance(raw, dict):
                raise self._error("header must be a JSON object", 1)
            return _header_values(raw, self.name, 1)
        if not text.startswith("#"):
            raise self._error(
                f"first line must be the header comment '# format={FORMAT_ID} issuer=... "
                "batch_id=... profile=... profile_version=... record_count=...'",
                1,
            )
        pairs: dict[str, str] = {}
        for token in text[1:].split():
            key, sep, value = token.partition("=")
            if not sep:
                raise self._error(f"header item {token[:20]!r} is not key=value", 1)
            if key in pairs:
                raise self._error("header field given twice", 1, key)
            pairs[key] = value
        return _header_values(pairs, self.name, 1)

    def _read_columns(self) -> list[str]:
        text = self._next_line()
        line = self._lines.number
        if text is None:
            raise self._error("the column names line is missing", 2)
        if line in self._lines.bad:
            raise self._error(self._lines.bad[line], line)
        try:
            columns = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            raise self._error("the column names line is not valid CSV", line) from None
        seen: set[str] = set()
        for c in columns:
            if c in seen:
                raise self._error("column appears twice", line, c)
            seen.add(c)
            if self.profile.input_field(c) is None:
                raise self._error("unexpected column (not a field of the profile)", line, c)
        for f in self.profile.input.fields:
            if f.required and f.name not in seen:
                raise self._error("missing column", line, f.name)
        return columns

    # -- records -------------------------------------------------------------
    def _raw_records(self) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        """(line, values or None, problem) for each record line."""
        if self.format == "jsonl":
            for text in self._iter:
                line = self._lines.number
                body = text.rstrip("\r\n")
                if not body.strip():
                    yield line, None, "empty line"
                    continue
                try:
                    obj = json.loads(body)
                except json.JSONDecodeError as e:
                    yield line, None, f"record is not valid JSON ({e.msg} at column {e.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield line, None, "record must be a JSON object"
                    continue
                yield line, obj, None
            return
        columns = self._columns or []
        reader = csv.reader(self._iter)
        while True:
            start = self._lines.number + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield start, None, f"malformed CSV ({e})"
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                yield start, None, "empty line"
                continue
            if len(row) != len(columns):
                yield start, None, f"expected {len(columns)} values, found {len(row)}"
                continue
            yield start, dict(zip(columns, row, strict=True)), None

    def _check(
        self, line: int, obj: dict[str, Any], bad_utf8: dict[int, str]
    ) -> tuple[dict[str, str], list[InputError]]:
        errs: list[InputError] = []
        values: dict[str, str] = {}
        for key, v in obj.items():
            if key not in self._specs:
                errs.append(self._error("unexpected field (not a field of the profile)", line, key))
                continue
            if v is None:
                v = ""
            if not isinstance(v, str):
                errs.append(
                    self._error(
                        "value must be a JSON string (quote numbers to keep leading zeros)",
                        line,
                        key,
                    )
                )
                continue
            values[key] = v
        if bad_utf8:
            where = next((k for k, v in values.items() if "\ufffd" in v), None)
            for n, msg in bad_utf8.items():
                errs.append(self._error(msg, n, where))
            return values, errs
        bad_fields: set[str] = set()
        for spec in self._fields:
            v = values.get(spec.name)
            if v is None:
                if spec.required and spec.name not in obj:
                    errs.append(self._error("missing field", line, spec.name))
                    bad_fields.add(spec.name)
                continue
            if v == "":
                if spec.required:
                    errs.append(self._error("required field is empty", line, spec.name))
                    bad_fields.add(spec.name)
                continue
            problem = validate_value(spec, v, values, self.context)
            if problem:
                errs.append(self._error(problem, line, spec.name))
                bad_fields.add(spec.name)
        for u in self._unique_fields:
            v = values.get(u, "")
            if v and u not in bad_fields:
                first = self._unique.add(u, v, line)
                if first is not None:
                    errs.append(self._error(f"duplicate value: same {u} as line {first}", line, u))
        if not errs:
            try:
                check_card_body(self._card_body, values)
            except InputError as e:
                errs.append(self._error(e.reason, line, e.field))
        return values, errs

    def __iter__(self) -> Iterator[IssuerRecord]:
        if self._started:
            raise RuntimeError("an IssuerFileReader can be iterated once")
        self._started = True
        try:
            yield from self._records()
        finally:
            self.close()

    def _records(self) -> Iterator[IssuerRecord]:
        refused = False
        for line, obj, problem in self._raw_records():
            bad_utf8: dict[int, str] = {}
            if self._lines.bad:  # lines of this record only: read lazily
                bad_utf8 = dict(self._lines.bad)
                self._lines.bad.clear()
            if problem == "empty line":
                self.report.add(self._error(problem, line))
                refused = refused or self.policy == Policy.REFUSE
                continue
            self.records += 1
            errs: list[InputError]
            values: dict[str, str] = {}
            if obj is None:
                errs = [self._error(problem or "bad record", line)]
                if bad_utf8:
                    errs = [self._error(msg, n) for n, msg in bad_utf8.items()]
            else:
                values, errs = self._check(line, obj, bad_utf8)
            if errs:
                for e in errs:
                    self.report.add(e)
                self.report.records_set_aside += self.policy == Policy.SET_ASIDE
                refused = refused or self.policy == Policy.REFUSE
                continue
            self.accepted += 1
            if not refused:
                yield IssuerRecord(line, values)
        if self.records != self.header.record_count:
            self.report.add(
                self._error(
                    f"header says {self.header.record_count} records, the file has {self.records}",
                    1,
                    "record_count",
                )
            )
            raise BatchRefused(self.report)
        if refused:
            raise BatchRefused(self.report)


def scan_issuer_file(
    source: str | Path | IO[bytes],
    *,
    today: date,
    policy: Policy = Policy.REFUSE,
    resolver: ProfileResolver = builtin_resolver,
    name: str | None = None,
    context: ValidationContext | None = None,
    max_listed: int = 1000,
) -> ScanResult:
    """Read and check a whole file without keeping its records (intake pass one).

    Raises ``InputError`` for a bad header and :class:`BatchRefused` when the
    policy refuses the file; otherwise returns the counts and the exception report.
    """
    with IssuerFileReader(
        source,
        today=today,
        policy=policy,
        resolver=resolver,
        name=name,
        context=context,
        max_listed=max_listed,
    ) as reader:
        for _ in reader:
            pass
        return ScanResult(
            reader.header,
            reader.profile,
            reader.records,
            reader.accepted,
            reader.report,
            reader.sha256,
        )
