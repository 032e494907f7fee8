"""``cardperso issuer generate`` and ``cardperso profile check`` through the real CLI.

Skipped until the two commands are registered in ``cardperso.cli``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dataprep_samples import TODAY
from typer.testing import CliRunner

from cardperso import cli
from cardperso.dataprep.issuer_file import scan_issuer_file
from cardperso.profiles.loader import _builtin_dir

_groups = {g.name for g in cli.app.registered_groups}
pytestmark = pytest.mark.skipif(
    not {"issuer", "profile"} <= _groups, reason="issuer/profile commands not in cli.py yet"
)

runner = CliRunner()


def test_issuer_generate_then_intake_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    args = ["issuer", "generate", str(out), "-p", "sim", "-n", "20", "--today", "2026-03-15"]
    res = runner.invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("wrote 20 sim records (jsonl, ")
    assert scan_issuer_file(out, today=TODAY).accepted == 20
    again = tmp_path / "again.jsonl"
    runner.invoke(cli.app, [*args[:2], str(again), *args[3:]])
    assert again.read_bytes() == out.read_bytes()


def test_issuer_generate_errors_exit_with_config_code(tmp_path: Path) -> None:
    res = runner.invoke(cli.app, ["issuer", "generate", str(tmp_path / "x.csv"), "-p", "credit"])
    assert res.exit_code == 2
    assert "unknown profile 'credit'" in res.output


def test_profile_check(tmp_path: Path) -> None:
    res = runner.invoke(cli.app, ["profile", "check", "debit"])
    assert res.exit_code == 0
    assert (
        res.output.splitlines()[0]
        == "profile debit v1: Payment debit card (chip and magnetic stripe)"
    )
    bad = tmp_path / "bad.yaml"
    text = (_builtin_dir() / "debit.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("size: 64", "size: 0"), encoding="utf-8")
    res = runner.invoke(cli.app, ["profile", "check", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml: files[2].size: Input should be greater than or equal to 1" in res.output
