"""Synthetic issuer files: repeatable from a seed, realistic, and accepted by intake."""

from __future__ import annotations

import base64
import io
import os
from collections import Counter
from pathlib import Path

import pytest
from dataprep_samples import TODAY

from cardperso.dataprep.fields import decode_pbm, presort_key
from cardperso.dataprep.generator import generate_records, write_issuer_file
from cardperso.dataprep.issuer_file import IssuerFileReader, Policy, scan_issuer_file
from cardperso.profiles import load_builtin

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CARDPERSO_UPDATE_GOLDEN") == "1"


def _bytes(profile: str, count: int, seed: int, fmt: str = "csv") -> bytes:
    out = io.BytesIO()
    write_issuer_file(load_builtin(profile), out, count, seed, TODAY, fmt=fmt)
    return out.getvalue()


@pytest.mark.parametrize("profile", ["debit", "sim", "employee"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_same_seed_same_bytes(profile: str, fmt: str) -> None:
    a = _bytes(profile, 300, 42, fmt)
    assert a == _bytes(profile, 300, 42, fmt)
    assert a != _bytes(profile, 300, 43, fmt)


@pytest.mark.parametrize("profile,fmt", [("debit", "csv"), ("sim", "jsonl"), ("employee", "csv")])
def test_golden_issuer_file(profile: str, fmt: str) -> None:
    got = _bytes(profile, 4, 2026, fmt)
    path = GOLDEN / f"issuer_{profile}.{fmt}"
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(got)
    assert got == path.read_bytes()


@pytest.mark.parametrize("profile", ["debit", "sim", "employee"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_generated_files_pass_intake(profile: str, fmt: str) -> None:
    data = _bytes(profile, 1500, 7, fmt)
    result = scan_issuer_file(io.BytesIO(data), name=f"gen.{fmt}", today=TODAY)
    assert result.records == result.accepted == 1500
    assert result.report.total_problems == 0
    assert result.header.profile == profile


def test_debit_records_are_realistic() -> None:
    records = list(generate_records(load_builtin("debit"), 4000, 11, TODAY))
    countries = Counter(r["country"] for r in records)
    assert set(countries) == {"DE", "FR", "GB", "US", "NL"}
    regions = {presort_key(r["country"], r["postal_code"])[:2] for r in records}
    assert len(regions) >= 50  # many postal regions across five countries
    assert all(r["pan"].startswith("476173") and len(r["pan"]) == 16 for r in records)
    assert len({r["pan"] for r in records}) == len(records)
    expiries = Counter(r["expiry"] for r in records)
    assert min(expiries) >= "2803" and max(expiries) <= "3103"  # 24 to 60 months ahead
    assert any(not r["given_name"].isascii() for r in records)  # Jürgen, François, ...
    assert any("'" in r["family_name"] for r in records)  # O'Brien, D'Amico
    assert any(r["address_line2"] for r in records) and any(not r["address_line2"] for r in records)
    assert all(len(r["embossed_name"]) <= 26 and r["embossed_name"].isascii() for r in records)


def test_sim_identifiers_are_unique_and_well_formed() -> None:
    records = list(generate_records(load_builtin("sim"), 3000, 5, TODAY))
    assert len({r["iccid"] for r in records}) == 3000
    assert len({r["imsi"] for r in records}) == 3000
    assert all(r["iccid"].startswith("8949001") and len(r["iccid"]) == 19 for r in records)
    assert all(r["imsi"].startswith("00101") for r in records)
    assert len({r["ki"] for r in records}) == 3000


def test_employee_photos_are_small_pbm_images() -> None:
    records = list(generate_records(load_builtin("employee"), 50, 3, TODAY))
    photos = {r["photo"] for r in records}
    assert len(photos) == 50  # every person gets their own speckle
    for p in photos:
        pbm = decode_pbm(base64.b64decode(p))
        assert pbm is not None and pbm[:2] == (48, 64)
    assert len({r["staff_number"] for r in records}) == 50


def test_number_space_too_small_is_refused() -> None:
    from cardperso.profiles import parse_profile
    from cardperso.profiles.loader import dump_profile

    text = dump_profile(load_builtin("employee")).replace(
        "min_length: 8\n    max_length: 8", "min_length: 3\n    max_length: 3"
    )
    p = parse_profile(text, "small.yaml")
    with pytest.raises(ValueError, match="room for 10 unique values, not 11"):
        list(generate_records(p, 11, 1, TODAY))


def test_set_aside_keeps_good_generated_records() -> None:
    data = _bytes("debit", 200, 9)
    lines = data.split(b"\n")
    pan = lines[10].split(b",")[0]
    bad = pan[:-1] + str((int(pan[-1:]) + 1) % 10).encode()  # breaks the Luhn check
    lines[10] = lines[10].replace(pan, bad, 1)
    reader = IssuerFileReader(
        io.BytesIO(b"\n".join(lines)), name="g.csv", today=TODAY, policy=Policy.SET_ASIDE
    )
    good = list(reader)
    assert len(good) == 199 and reader.report.records_set_aside == 1
    assert all(r.line != 11 for r in good)
