"""``cardperso lettershop``: thin commands, exit codes and one clear line on errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from cardperso.lettershop.cli import lettershop_app
from cardperso.lettershop.config import LettershopConfig
from line.kit import PASSPHRASE
from production.support import PASSWORD

from .support import Bureau

RUNNER = CliRunner()


def invoke(b: Bureau, *args: str, operator: str = "olga") -> tuple[int, str, str]:
    url = f"sqlite:///{b.root / 'bureau.sqlite3'}"
    env = {"CARDPERSO_OPERATOR_PASSWORD": PASSWORD, "CARDPERSO_HSM_PASSPHRASE": PASSPHRASE.reveal()}
    common = ["--db", url, "--keystore", str(b.keystore), "--operator", operator]
    r = RUNNER.invoke(lettershop_app, [*args, *common], env=env)
    return r.exit_code, r.stdout, r.stderr


def test_run_prints_what_went_out_and_where(debit: Bureau, tmp_path: Path) -> None:
    b = debit
    b.close()  # the command opens the database and the keystore itself
    code, out, err = invoke(
        b,
        "run",
        str(b.batch_id),
        "--out",
        str(tmp_path / "o"),
        "--day",
        "2026-03-09",
    )
    assert code == 0, err
    assert "36 cards through the lettershop" in out
    assert "carriers: 36 posted, 0 diverted; days 2026-03-09 to 2026-03-09" in out
    assert "PIN mailers: 36 posted, 0 diverted, 0 held; days 2026-03-12 to 2026-03-12" in out
    assert (tmp_path / "o" / f"lettershop-batch-{b.batch_id}" / "dispatch-manifest.json").is_file()
    code, _out, err = invoke(b, "run", str(b.batch_id), "--out", str(tmp_path / "p"))
    assert code == 3 and err.startswith("error: ") and "already" in err


def test_test_letters_go_out_from_today(debit: Bureau, tmp_path: Path) -> None:
    debit.close()
    args = ["run", str(debit.batch_id), "--out", str(tmp_path), "--test-letters", "3"]
    code, out, err = invoke(debit, *args, "--test-region", "DE:80")
    assert code == 0, err
    assert "test letters: 3 posted" in out and "to DE 80" in out


def test_an_auditor_may_not_run_the_lettershop(debit: Bureau, tmp_path: Path) -> None:
    debit.close()
    code, _out, err = invoke(
        debit, "run", str(debit.batch_id), "--out", str(tmp_path), operator="ada"
    )
    assert code == 7 and "may not" in err


def test_bad_settings_are_one_line_and_exit_code_2(debit: Bureau, tmp_path: Path) -> None:
    debit.close()
    bad = tmp_path / "ls.yaml"
    bad.write_text("weights: {tolerance_g: 0.1}\n", encoding="utf-8")
    code, _out, err = invoke(debit, "run", str(debit.batch_id), "--config", str(bad))
    assert code == 2 and "tolerance" in err and len(err.strip().splitlines()) == 1


def test_config_prints_the_settings_as_yaml() -> None:
    r = RUNNER.invoke(lettershop_app, ["config"])
    assert r.exit_code == 0
    assert LettershopConfig.model_validate(yaml.safe_load(r.stdout)) == LettershopConfig()
