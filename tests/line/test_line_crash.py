"""Crash safety: SIGKILL the running line at 20+ random points of one batch, resume each
time, and check the invariants after every resume.

No record is produced twice, none is lost, the cards that were in a module (or on
the transport) at the kill are rejected "interrupted" and remade, and the chip
report stays true (``production.invariants.consistency_problems``).
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select as sql_select

from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import run_batch
from cardperso.production import repo
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

from .kit import import_product, stock_seed

RUNNER = Path(__file__).with_name("crash_runner.py")
KILLS = 22
RECORDS = 150


def _read_line(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the line process went silent"
    return proc.stdout.readline()


def _kill_somewhere(proc: subprocess.Popen[str], rng: random.Random) -> bool:
    """Let the line make 0-4 cards, wait a random moment, SIGKILL it. False if it ended."""
    cards = rng.randint(0, 4)
    seen = -1
    while seen < cards:
        line = _read_line(proc)
        if not line or line.startswith("done"):
            proc.wait()
            return False
        seen += 1
    time.sleep(rng.uniform(0.0, 0.03))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def test_sigkill_at_random_points_then_resume(
    db: Database, db_url: str, keystore: Path, hsm: SoftHsm, staff: Staff, tmp_path: Path
) -> None:
    batch_id = import_product(db, hsm, staff, "debit", RECORDS, tmp_path, spare=1.0)
    with db.transaction() as s:
        repo.start_batch(s, batch_id, by=staff.operator, when=db.now())
    rng = random.Random(20260305)
    kills = interrupted = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [
                sys.executable,
                str(RUNNER),
                db_url,
                str(keystore),
                str(batch_id),
                stock_seed("debit"),
                staff.operator.name,
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if not _kill_somewhere(proc, rng):
            break
        kills += 1
        with db.reader() as s:
            assert consistency_problems(s, batch_id) == []  # even before recovery
        with db.transaction() as s:
            rec = repo.resume_batch(s, batch_id, by=staff.operator, when=db.now())
            interrupted += len(rec.rejected_attempts)
        with db.reader() as s:
            assert consistency_problems(s, batch_id) == []
            open_attempts = s.scalars(
                sql_select(Attempt).where(
                    Attempt.batch_id == batch_id, Attempt.outcome == AttemptOutcome.IN_PROGRESS
                )
            ).all()
            assert open_attempts == []
    assert kills >= 20, "the batch finished before enough kills"
    assert interrupted >= 10
    result = run_batch(
        db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(stock_seed("debit")),
        config=LineConfig(modules=2),
    )
    assert result.batch_done
    with db.reader() as s:
        assert consistency_problems(s, batch_id) == []
        jobs = s.scalars(sql_select(CardJob).where(CardJob.batch_id == batch_id)).all()
        assert len(jobs) == RECORDS and all(j.state is JobState.GOOD for j in jobs)
        binned = s.scalars(
            sql_select(RejectBinEntry).where(
                RejectBinEntry.batch_id == batch_id, RejectBinEntry.reason == "interrupted"
            )
        ).all()
        assert len(binned) == interrupted
        for entry in binned:  # every interrupted card was remade, the remake linked to it
            remake = s.scalars(
                sql_select(Attempt).where(Attempt.remake_of_id == entry.attempt_id)
            ).one()
            assert remake.job_id == entry.attempt.job_id
        good = s.scalars(
            sql_select(Attempt).where(
                Attempt.batch_id == batch_id, Attempt.outcome == AttemptOutcome.GOOD
            )
        ).all()
        assert len(good) == RECORDS == len({a.job_id for a in good})
        batch = s.get(Batch, batch_id)
        assert batch is not None and batch.state is BatchState.DONE
