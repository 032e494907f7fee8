"""``cardperso stock initialize`` and, in another process, ``batch run`` on its stock.

The initialization room's run and the later personalization run share nothing but
the database, the keystore and the card vault folder: the batch runs in a separate
Python process, as it would weeks later.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.line.cli_commands import batch_app, stock_app
from cardperso.production.db import Database, upgrade
from production.support import PASSWORD, Staff

from .kit import PASSPHRASE, TODAY
from .test_initroom import make_init_operator

app = typer.Typer()
app.add_typer(batch_app, name="batch")
app.add_typer(stock_app, name="stock")

_CHILD = """
import typer
from cardperso.line.cli_commands import batch_app
app = typer.Typer()
app.add_typer(batch_app, name="batch")
app()
"""


def test_stock_initialize_then_batch_run_in_another_process(tmp_path: Path, keystore: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bureau.sqlite3'}"
    upgrade(url)
    db = Database.open(url)
    try:
        staff = Staff(db)
        make_init_operator(db, staff)
    finally:
        db.dispose()
    env = {
        "CARDPERSO_OPERATOR_PASSWORD": PASSWORD,
        "CARDPERSO_HSM_PASSPHRASE": PASSPHRASE.reveal(),
    }
    common = ["--db", url, "--stock-seed", "jit-stock"]
    vault = tmp_path / "work" / "card-vault"
    bureau = [*common, "--keystore", str(keystore), "--vault", str(vault)]
    run = CliRunner().invoke
    r = run(app, ["batch", "receive-stock", "6", *common, "--operator", "olga"], env=env)
    assert r.exit_code == 0, r.output
    init = ["stock", "initialize", "debit", "-n", "4", "--method", "image", *bureau]
    r = run(app, [*init, "--operator", "olga"], env=env)
    assert r.exit_code == 7 and "may not initialize stock" in r.output
    r = run(app, [*init, "--operator", "ines"], env=env)
    assert r.exit_code == 0, r.output
    assert "4 cards initialized by image (vendor image)" in r.output
    assert "pre-initialized debit v1 stock; 0 spoiled" in r.output
    files = sorted(vault.glob("*.eeprom"))
    assert len(files) == 4
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    issuer = tmp_path / "issuer-debit.csv"
    generate_issuer_file("debit", issuer, 3, 21, today=TODAY, batch_id="DEBIT-JIT")
    keys = ["--db", url, "--keystore", str(keystore)]
    r = run(app, ["batch", "import", str(issuer), *keys, "--operator", "sam"], env=env)
    assert r.exit_code == 0, r.output
    later = ["batch", "run", "1", *bureau, "-m", "1", "--stock-kind", "pre_initialized"]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, *later, "--operator", "olga"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "3 cards: 3 good, 0 rejected" in child.stdout
    s = run(app, ["batch", "status", "1", "--db", url])
    assert "good 3" in s.output
