"""The batch line with its keys in a PKCS#11 token (SoftHSM2) instead of the soft HSM:
the same host code, a different security module. Import (record keys derived, data
sealed), initialization with KD derived in the token, personalization under secure
messaging keyed in the token, the chip check and QC's key proofs all go through
:class:`~cardperso.hsm.pkcs11.Pkcs11Hsm` (skipped without SoftHSM2, failing when
``CARDPERSO_REQUIRE_ALL=1``). The command line opens the same token by URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cardperso.cli import app
from cardperso.hsm import verify_chain
from cardperso.hsm.pkcs11 import Pkcs11Hsm
from cardperso.hsm.softhsm import wipe_token
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.invariants import consistency_problems
from cardperso.production.models import Attempt, AttemptOutcome
from hsm.softhsm import test_token
from production.support import Staff

from .kit import import_product, stock_seed

pytestmark = pytest.mark.realcomponent


@pytest.fixture
def token_hsm(tmp_path: Path) -> Iterator[Pkcs11Hsm]:
    token = test_token()
    wipe_token(token)
    hsm = Pkcs11Hsm.create(token.location, token.pin, tmp_path / "token.audit.jsonl")
    provision_demo_keys(hsm)
    yield hsm
    hsm.close()


def test_a_debit_batch_on_a_pkcs11_token(
    sqlite_db: Database, token_hsm: Pkcs11Hsm, tmp_path: Path
) -> None:
    count = 24
    staff = Staff(sqlite_db)
    batch_id = import_product(sqlite_db, token_hsm, staff, "debit", count, tmp_path)
    result = run_batch(
        sqlite_db,
        token_hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(stock_seed("debit")),
        config=LineConfig(modules=2, seed="pkcs11"),
    )
    assert result.batch_done and result.good == count and not result.rejected
    with sqlite_db.reader() as s:
        assert consistency_problems(s, batch_id) == []
        attempts = s.scalars(select(Attempt).where(Attempt.batch_id == batch_id)).all()
    assert len(attempts) == count and {a.outcome for a in attempts} == {AttemptOutcome.GOOD}
    for a in attempts:  # QC's HSM check proved the card's keys through the token
        finish = next(r for r in a.station_results if r["station"] == "finishing")
        assert finish["detail"]["stations"]["qc"]["hsm"]["proven"] >= 3
    # every call of the run is in the token's audit log, and the chain holds
    ops = [json.loads(line)["operation"] for line in token_hsm.audit_path.read_text().splitlines()]
    for op in ("kd_for_initialization", "card_sm_open", "card_sm_wrap", "verify_card_cryptogram"):
        assert op in ops
    assert verify_chain(token_hsm.audit_path).count == len(ops)


def test_the_command_line_opens_the_token_by_url(token_hsm: Pkcs11Hsm, tmp_path: Path) -> None:
    token = test_token()
    url = f"pkcs11:{token.location.module}?token={token.location.token}"
    env = {
        "CARDPERSO_HSM_PASSPHRASE": token.pin.reveal(),
        "CARDPERSO_HSM_AUDIT": str(token_hsm.audit_path),
    }
    token_hsm.close()  # one process may hold one login per token
    runner = CliRunner()
    listed = runner.invoke(app, ["keys", "list", "--keystore", url], env=env)
    assert listed.exit_code == 0, listed.output
    assert "KM.DEBIT.PERSO" in listed.output
    checked = runner.invoke(app, ["hsm", "verify-audit", "--keystore", url], env=env)
    assert checked.exit_code == 0, checked.output
