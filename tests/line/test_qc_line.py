"""Quality control on the line: every injected fault is caught by the check meant for
it, the rejected card is remade, and the remake passes.

A batch runs through ``run_batch`` with a share of its cards carrying one of the QC
fault kinds of ``kit.py`` (wrong data in a chip file, a wrong key, a blank chip, a
misprinted name, another cardholder's photo, a wrong track); QC runs every check on
every card, OCR included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.qc import QcConfig
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.models import Attempt, AttemptOutcome, CardJob, JobState, RejectBinEntry
from production.support import Staff

from .kit import QC_KINDS, FaultPlan, hooks, import_product, stock_seed

# fault kind -> (station, what its reason starts with)
CAUGHT_BY = {
    "chip_data": ("chip_check", "READ "),
    "blank_chip": ("chip_check", "GENERAL AUTHENTICATE"),
    "wrong_key": ("qc", "hsm check:"),
    "misprint": ("qc", "vision: card body line"),
    "photo_swap": ("qc", "vision: the card body's photo"),
    "wrong_track": ("magstripe", "track 2 read-back: the PAN differs"),
}


@pytest.mark.parametrize(
    ("product", "count", "kinds"),
    [
        ("debit", 60, ("chip_data", "wrong_key", "blank_chip", "misprint", "wrong_track")),
        ("employee", 40, ("wrong_key", "blank_chip", "misprint", "photo_swap")),
    ],
)
def test_each_fault_is_caught_by_its_check_and_the_remake_passes(
    sqlite_db: Database,
    hsm: SoftHsm,
    tmp_path: Path,
    product: str,
    count: int,
    kinds: tuple[str, ...],
) -> None:
    assert set(kinds) <= set(QC_KINDS)
    staff = Staff(sqlite_db)
    # A fault hits 35 % of cards at random: a record could meet one on each of the
    # default 6 attempts (0.35**6 per record); 12 attempts make that negligible.
    batch_id = import_product(
        sqlite_db, hsm, staff, product, count, tmp_path, spare=1.5, max_attempts=12
    )
    plan = FaultPlan(seed=count, rate=0.35, kinds=kinds)
    config = LineConfig(
        modules=2, seed="qc", fail_limit=1000, qc=QcConfig(ocr_every=1), **hooks(plan)
    )  # type: ignore[arg-type]
    feeder = SimulatedFeeder(stock_seed(product), fault=plan.reader)
    result = run_batch(sqlite_db, hsm, batch_id, by=staff.operator, feeder=feeder, config=config)
    assert result.batch_done and result.good == count
    with sqlite_db.reader() as s:
        jobs = s.scalars(select(CardJob).where(CardJob.batch_id == batch_id)).all()
        assert all(j.state is JobState.GOOD for j in jobs)
        attempts = {a.chip_serial: a for a in s.scalars(select(Attempt))}
        binned = {e.attempt_id: e for e in s.scalars(select(RejectBinEntry))}
        by_job: dict[int, list[Attempt]] = {}
        for a in attempts.values():
            by_job.setdefault(a.job_id, []).append(a)
        seen: set[str] = set()
        for serial, kind in plan.faults.items():
            att = attempts.get(serial)
            if att is None:
                continue
            seen.add(kind)
            assert att.outcome is AttemptOutcome.REJECTED, (kind, serial)
            entry = binned[att.id]
            station, start = CAUGHT_BY[kind]
            assert entry.station == station, (kind, entry.station, entry.reason)
            assert entry.reason.startswith(start), (kind, entry.reason)
            # the job was remade on another card, and one remake ended good
            later = sorted(by_job[att.job_id], key=lambda a: a.attempt_no)
            assert later[-1].outcome is AttemptOutcome.GOOD
            nxt = next(a for a in later if a.attempt_no == att.attempt_no + 1)
            assert nxt.remake_of_id == att.id
        assert seen == set(kinds)
        # a good card's QC result carries its scores
        good = next(a for a in attempts.values() if a.outcome is AttemptOutcome.GOOD)
        finish = next(e for e in good.station_results if e["station"] == "finishing")
        qc = finish["detail"]["stations"]["qc"]
        assert qc["ok"] and qc["vision"]["ocv"] == 1.0 and qc["vision"]["ocr"] == 1.0
        assert qc["hsm"]["proven"] >= 1
