"""Use cases behind ``cardperso issuer generate`` and ``cardperso profile check``."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataprep_samples import TODAY

from cardperso.dataprep.issuer_file import scan_issuer_file
from cardperso.dataprep.usecases import check_profile, generate_issuer_file
from cardperso.errors import ConfigError
from cardperso.profiles.loader import _builtin_dir


def test_check_builtin_profile_summary() -> None:
    s = check_profile("sim")
    assert s.profile.id == "sim"
    assert s.lines[0] == "profile sim v1: GSM SIM (3GPP TS 51.011)"
    assert (
        "  PUK PUK1 (ref 2): bureau_random, 8 digits, 10 tries, mailed, returned to issuer"
        in s.lines
    )
    assert "  key KI (ref 1): issuer_supplied, aes128 v1" in s.lines
    assert (
        s.lines[-1] == "  letters: card carrier, PIN mailer (PIN1, PUK1, PIN2, PUK2) 2 days later"
    )


def test_check_profile_file_and_error(tmp_path: Path) -> None:
    good = tmp_path / "corp.yaml"
    good.write_text(
        (_builtin_dir() / "employee.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert check_profile(good).profile.id == "employee"
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        good.read_text(encoding="utf-8").replace("ref: 2\n", "ref: 1\n", 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as err:
        check_profile(bad)
    assert "broken.yaml: pins[1].ref: PIN reference 1 repeated" in str(err.value)


@pytest.mark.parametrize("name,fmt", [("debit.csv", "csv"), ("sim.jsonl", "jsonl")])
def test_generate_issuer_file(tmp_path: Path, name: str, fmt: str) -> None:
    out = tmp_path / name
    profile = name.split(".")[0]
    g = generate_issuer_file(profile, out, 250, 99, today=TODAY, batch_id="B-99")
    assert g.format == fmt and g.records == 250 and g.bytes_written == out.stat().st_size
    r = scan_issuer_file(out, today=TODAY)
    assert (r.header.batch_id, r.header.profile, r.accepted) == ("B-99", profile, 250)


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format must be csv or jsonl, not 'xml'"):
        generate_issuer_file("debit", tmp_path / "x.csv", 1, 1, today=TODAY, fmt="xml")
    with pytest.raises(ConfigError, match="unknown profile 'credit'"):
        generate_issuer_file("credit", tmp_path / "x.csv", 1, 1, today=TODAY)
