"""End to end: a few hundred cards of each product through the line with random faults.

Every record ends bound to exactly one good chip; every card that a fault spoiled
is in the reject bin with its station and reason; every remake links to the
attempt it replaces; the broken module is taken out of service.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.invariants import consistency_problems
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    Batch,
    BatchState,
    CardJob,
    JobState,
    RejectBinEntry,
)
from production.support import Staff

from .kit import KINDS, FaultPlan, hooks, import_product, stock_seed

# what the reject bin says for each fault kind: (stations, one of these in the reason).
# A write cut after the card's journal committed it is rolled forward at the next
# power-up, so the retried command may find its own work done (an SW, not a mute card).
EXPECTED = {
    "write_failure": (("init", "perso", "chip_check"), ("mute", "SW ")),
    "dead": (("feeder",), ("does not answer",)),
    "stripe": (("magstripe",), ("read-back",)),
    "misprint": (("qc",), ("card body",)),
}


def check_batch(db: Database, batch_id: int, plan: FaultPlan) -> None:
    with db.reader() as s:
        assert consistency_problems(s, batch_id) == []
        batch = s.get(Batch, batch_id)
        assert batch is not None and batch.state is BatchState.DONE
        jobs = s.scalars(select(CardJob).where(CardJob.batch_id == batch_id)).all()
        assert jobs and all(j.state is JobState.GOOD for j in jobs)
        attempts = s.scalars(select(Attempt).where(Attempt.batch_id == batch_id)).all()
        by_chip = {a.chip_serial: a for a in attempts}
        binned = {
            e.attempt_id: e
            for e in s.scalars(select(RejectBinEntry).where(RejectBinEntry.batch_id == batch_id))
        }
        by_job: dict[int, list[Attempt]] = {}
        for a in attempts:
            by_job.setdefault(a.job_id, []).append(a)
        for atts in by_job.values():
            atts.sort(key=lambda a: a.attempt_no)
            assert sum(a.outcome is AttemptOutcome.GOOD for a in atts) == 1
            for prev, nxt in itertools.pairwise(atts):
                assert prev.outcome is AttemptOutcome.REJECTED
                assert nxt.remake_of_id == prev.id
        seen = 0
        for serial, kind in plan.faults.items():
            att = by_chip.get(serial)
            if att is None:
                continue  # the card was never fed
            seen += 1
            if kind == "tearing":
                if att.outcome is AttemptOutcome.GOOD:
                    chip = next(e for e in att.station_results if e["station"] == "chip_module")
                    assert chip["detail"]["retried"] is True
                else:
                    assert att.id in binned
                continue
            assert att.outcome is AttemptOutcome.REJECTED, (serial, kind)
            entry = binned[att.id]
            stations, words = EXPECTED[kind]
            assert entry.station in stations, (kind, entry.station, entry.reason)
            assert any(w in entry.reason for w in words), (kind, entry.reason)
        assert seen >= 5
        for serial in plan.broken_cards:
            att = by_chip[serial]
            assert att.outcome is AttemptOutcome.REJECTED
            assert "contact failure" in binned[att.id].reason


@pytest.mark.parametrize(
    ("product", "count"),
    [("debit", 200), ("sim", 150), ("employee", 120)],
)
def test_every_record_ends_with_one_good_card_despite_faults(
    db: Database, hsm: SoftHsm, staff: Staff, tmp_path: Path, product: str, count: int
) -> None:
    batch_id = import_product(db, hsm, staff, product, count, tmp_path)
    kinds = KINDS if product == "debit" else tuple(k for k in KINDS if k != "stripe")
    plan = FaultPlan(seed=count, rate=0.1, broken_module="M03", kinds=kinds)
    feeder = SimulatedFeeder(stock_seed(product), fault=plan.reader)
    config = LineConfig(modules=4, seed="e2e", **hooks(plan))  # type: ignore[arg-type]
    result = run_batch(db, hsm, batch_id, by=staff.operator, feeder=feeder, config=config)
    assert result.batch_done and result.stopped is None
    assert result.module_stats["M03"].out_of_service
    assert result.good == count
    assert sum(result.rejected.values()) == result.cards - count
    assert result.remakes == result.cards - count
    check_batch(db, batch_id, plan)
