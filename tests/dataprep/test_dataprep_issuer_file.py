"""Issuer-file intake behaviour: formats, line numbers, policies, streaming memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import pytest
from dataprep_samples import DEBIT, TODAY, copy_records, header, render_csv, render_jsonl

from cardperso.dataprep.digestset import DigestSet
from cardperso.dataprep.generator import write_issuer_file
from cardperso.dataprep.issuer_file import (
    BatchRefused,
    IssuerFileReader,
    Policy,
    builtin_resolver,
    detect_format,
    scan_issuer_file,
)
from cardperso.errors import InputError
from cardperso.profiles import load_builtin


def _csv(records: list[dict[str, str]] | None = None) -> bytes:
    rs = records if records is not None else copy_records("debit")
    return render_csv(header("debit", len(rs)), rs, list(DEBIT[0]))


def test_records_carry_their_line_numbers() -> None:
    reader = IssuerFileReader(io.BytesIO(_csv()), name="b.csv", today=TODAY)
    got = list(reader)
    assert [r.line for r in got] == [3, 4, 5]
    assert got[0].values["family_name"] == "Müller"
    assert reader.header.batch_id == "B0001" and reader.profile.id == "debit"


def test_bom_and_crlf_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + _csv().replace(b"\n", b"\r\n")
    result = scan_issuer_file(io.BytesIO(data), name="b.csv", today=TODAY)
    assert result.accepted == 3


def test_quoted_line_break_keeps_line_numbers_right() -> None:
    rs = copy_records("debit")
    rs[0]["address_line2"] = "Hinterhaus\nLinks"  # a control character: refused...
    rs[1]["city"] = ""  # ...and the next record's line is still counted physically
    with pytest.raises(BatchRefused) as err:
        scan_issuer_file(io.BytesIO(_csv(rs)), name="b.csv", today=TODAY)
    assert err.value.report.lines() == [
        "b.csv:3, field 'address_line2': position 11 (U+000A) is a control or unassigned character",
        "b.csv:5, field 'city': required field is empty",
    ]
    assert str(err.value).endswith("(and 1 more problems)")


def test_refuse_yields_nothing_after_the_first_problem() -> None:
    rs = copy_records("debit")
    rs[1]["pan"] = "4761739001010029"
    reader = IssuerFileReader(io.BytesIO(_csv(rs)), name="b.csv", today=TODAY)
    got = []
    with pytest.raises(BatchRefused):
        for r in reader:
            got.append(r.line)
    assert got == [3]  # the consumer must roll back what it took: the batch is refused


def _six() -> list[dict[str, str]]:
    from cardperso.payments._digits import luhn_check_digit

    rs = [dict(DEBIT[i % 3]) for i in range(6)]
    for i, r in enumerate(rs):
        body = f"47617390010100{i}"
        r["pan"] = body + luhn_check_digit(body)
    return rs


def test_set_aside_policy_and_report() -> None:
    rs = _six()
    rs[1]["expiry"] = "2501"
    rs[4]["country"] = "de"
    result = scan_issuer_file(
        io.BytesIO(_csv(rs)), name="b.csv", today=TODAY, policy=Policy.SET_ASIDE
    )
    assert (result.records, result.accepted) == (6, 4)
    assert result.report.records_set_aside == 2
    assert result.report.to_text() == (
        "exception report for b.csv (policy set_aside): 2 problems, 2 records set aside\n"
        "b.csv:4, field 'expiry': card would be expired: expiry is before 2026-03\n"
        "b.csv:7, field 'country': country must be an ISO 3166-1 alpha-2 code "
        "(2 upper-case letters)\n"
    )


def test_wrong_count_refuses_even_under_set_aside() -> None:
    rs = copy_records("debit")
    data = render_csv(header("debit", 2), rs, list(DEBIT[0]))
    with pytest.raises(BatchRefused, match="header says 2 records, the file has 3"):
        scan_issuer_file(io.BytesIO(data), name="b.csv", today=TODAY, policy=Policy.SET_ASIDE)


def test_report_lists_at_most_max_listed() -> None:
    rs = [dict(r, city="") for r in _six()[:5]]
    result = scan_issuer_file(
        io.BytesIO(_csv(rs)), name="b.csv", today=TODAY, policy=Policy.SET_ASIDE, max_listed=2
    )
    assert result.report.total_problems == 5
    assert result.report.lines()[-1] == "... and 3 more problems"


def test_jsonl_and_optional_fields() -> None:
    rs = copy_records("debit")
    del rs[0]["address_line2"]  # optional: may be left out
    rs[1]["address_line2"] = None  # type: ignore[assignment]  # null counts as empty
    data = render_jsonl(header("debit", 3), rs)
    result = scan_issuer_file(io.BytesIO(data), name="b.jsonl", today=TODAY)
    assert result.accepted == 3


def test_format_detection() -> None:
    assert detect_format("x.jsonl", b"") == "jsonl"
    assert detect_format("x.ndjson", b"") == "jsonl"
    assert detect_format("x.CSV", b"{") == "csv"
    assert detect_format("x.dat", b'{"format"') == "jsonl"
    assert detect_format("x.dat", b"\xef\xbb\xbf# format") == "csv"
    data = render_jsonl(header("debit", 3), copy_records("debit"))
    assert scan_issuer_file(io.BytesIO(data), name="upload.dat", today=TODAY).accepted == 3


def test_sha256_covers_the_whole_file(tmp_path: Path) -> None:
    data = _csv()
    f = tmp_path / "batch.csv"
    f.write_bytes(data)
    result = scan_issuer_file(f, today=TODAY)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.report.file == "batch.csv"


def test_expected_profile_and_custom_resolver() -> None:
    with pytest.raises(InputError) as err:
        IssuerFileReader(io.BytesIO(_csv()), name="b.csv", today=TODAY, expected_profile="sim")
    assert (
        str(err.value) == "b.csv:1, field 'profile': batch is for profile 'debit', expected 'sim'"
    )

    seen: list[tuple[str, int]] = []

    def resolver(name: str, version: int):  # type: ignore[no-untyped-def]
        seen.append((name, version))
        return builtin_resolver(name, version)

    scan_issuer_file(io.BytesIO(_csv()), name="b.csv", today=TODAY, resolver=resolver)
    assert seen == [("debit", 1)]


def test_a_reader_iterates_once() -> None:
    reader = IssuerFileReader(io.BytesIO(_csv()), name="b.csv", today=TODAY)
    list(reader)
    with pytest.raises(RuntimeError):
        list(reader)


def test_overlong_line_is_refused_without_reading_it() -> None:
    from cardperso.dataprep import issuer_file

    data = _csv() + b"x" * (issuer_file.MAX_LINE + 10) + b"\n"
    with pytest.raises(InputError, match=r"^b.csv:6: line is longer than 1048576 bytes$"):
        scan_issuer_file(io.BytesIO(data), name="b.csv", today=TODAY)


def test_empty_file() -> None:
    with pytest.raises(InputError, match=r"^b.csv:1: file is empty \(no header\)$"):
        scan_issuer_file(io.BytesIO(b""), name="b.csv", today=TODAY)


def test_digest_set() -> None:
    s = DigestSet(capacity=16, salt=b"fixed")
    for i in range(1000):
        assert s.add("pan", f"{i:016d}", i + 3) is None
    assert len(s) == 1000
    assert s.add("pan", f"{500:016d}", 9999) == 503
    assert s.add("iccid", f"{500:016d}", 10) is None  # field names keep values apart
    assert 1000 * 20 * 3 // 2 <= s.nbytes <= 1001 * 20 * 3  # load factor 1/3 .. 2/3


# -- bounded memory ------------------------------------------------------------------


def _peak_over_digests(path: Path) -> tuple[int, int, int]:
    """(peak traced bytes minus the digest tables, digest table bytes, records)."""
    tracemalloc.start()
    try:
        reader = IssuerFileReader(path, today=TODAY)
        n = 0
        for _ in reader:
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table = reader._unique.nbytes
    # while the table doubles, the old half-size table is alive too
    return peak - table - table // 2, table, n


def _generated(tmp_path: Path, count: int) -> Path:
    f = tmp_path / f"big{count}.csv"
    write_issuer_file(load_builtin("debit"), f, count, 1, TODAY)
    return f


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small_rest, _, _ = _peak_over_digests(_generated(tmp_path, 1_000))
    big_rest, table, n = _peak_over_digests(_generated(tmp_path, 12_000))
    assert n == 12_000
    assert table <= 12_000 * 60  # the digest set: at most 60 bytes per record
    # everything else stays flat: 12x the records, well under a megabyte more
    assert big_rest < small_rest + 1_000_000
    assert big_rest < 3_000_000


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CARDPERSO_SLOW"), reason="scale test: set CARDPERSO_SLOW=1 (about 1 min)"
)
def test_memory_bounded_for_200k_records(tmp_path: Path) -> None:
    rest, table, n = _peak_over_digests(_generated(tmp_path, 200_000))
    assert n == 200_000
    assert table <= 200_000 * 60
    assert rest < 3_000_000
