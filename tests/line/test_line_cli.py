"""The batch commands and the demo through typer's CliRunner: exit codes and output."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from cardperso.line.cli_commands import batch_app, demo_command

app = typer.Typer()
app.add_typer(batch_app, name="batch")
app.command("demo")(demo_command)


def test_demo_generates_imports_runs_and_reports(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--dir", str(work), "--count", "40", "--modules", "2"])
    assert r.exit_code == 0, r.output
    assert "40 good" in r.output
    assert "invariants: hold" in r.output
    for name in ("issuer-debit.csv", "demo.sqlite3", "demo.cpks"):
        assert (work / name).exists()
    assert "chip report" in r.output and (work / "reports").is_dir()
    assert list((work / "faces").glob("*.png"))
    url = f"sqlite:///{work / 'demo.sqlite3'}"
    s = CliRunner().invoke(app, ["batch", "status", "1", "--db", url])
    assert s.exit_code == 0, s.output
    assert "good 40" in s.output


def test_status_of_an_unknown_batch_is_one_clear_error(tmp_path: Path) -> None:
    from cardperso.production.db import upgrade

    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    upgrade(url)
    r = CliRunner().invoke(app, ["batch", "status", "9", "--db", url])
    assert r.exit_code == 3
    assert "no batch 9" in r.output
