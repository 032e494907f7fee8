"""Only an authenticated operator with the right role may import, start, resume or
cancel a batch; refusals and actions are in the audit log; a bad file leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.errors import InputError
from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import cancel_batch, import_batch, run_batch
from cardperso.production import audit
from cardperso.production.db import Database
from cardperso.production.models import AuditLog, Batch, BatchState, CardJob
from cardperso.production.operators import PermissionDenied
from production.support import Staff

from .kit import TODAY, import_product, stock_seed


def _actions(db: Database) -> list[tuple[str, str, str]]:
    with db.reader() as s:
        return [
            (r.actor, r.action, r.result)
            for r in s.scalars(select(AuditLog).order_by(AuditLog.seq))
        ]


def test_roles_that_may_not_start_resume_or_cancel_are_refused_and_audited(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    db = sqlite_db
    staff = Staff(db)
    batch_id = import_product(db, hsm, staff, "debit", 12, tmp_path)
    feeder = SimulatedFeeder(stock_seed("debit"))
    for who in (staff.auditor, staff.security_officer):
        with pytest.raises(PermissionDenied):
            run_batch(db, hsm, batch_id, by=who, feeder=feeder)
    with pytest.raises(PermissionDenied):
        cancel_batch(db, batch_id, by=staff.operator)
    with db.reader() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None and batch.state is BatchState.IMPORTED
    result = run_batch(
        db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=feeder,
        config=LineConfig(modules=2, max_cards=5),
    )
    assert result.cards == 5 and not result.batch_done
    with pytest.raises(PermissionDenied):  # resuming is refused to the auditor too
        run_batch(db, hsm, batch_id, by=staff.auditor, feeder=feeder)
    cancel_batch(db, batch_id, by=staff.supervisor, reason="test")
    acts = _actions(db)
    assert ("ada", "start_batch", "denied") in acts
    assert ("sofia", "start_batch", "denied") in acts
    assert ("olga", "cancel_batch", "denied") in acts
    assert ("ada", "resume_batch", "denied") in acts
    assert ("sam", "import_batch", "ok") in acts
    assert ("olga", "start_batch", "ok") in acts
    assert ("olga", "line_run", "partial") in acts
    assert ("sam", "cancel_batch", "ok") in acts
    with db.reader() as s:
        assert audit.verify_chain(s) == []


def test_an_operator_may_not_import_and_a_bad_file_leaves_nothing(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    db = sqlite_db
    staff = Staff(db)
    path = tmp_path / "issuer.csv"
    generate_issuer_file("debit", path, 20, 3, today=TODAY)
    with pytest.raises(PermissionDenied):
        import_batch(db, hsm, path, by=staff.operator, today=TODAY)
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace(lines[-1].split(",")[0], "4761730000000000", 1)  # bad Luhn
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        import_batch(db, hsm, path, by=staff.supervisor, today=TODAY)
    assert err.value.line == 22
    with db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0
        assert s.scalar(select(func.count()).select_from(CardJob)) == 0
