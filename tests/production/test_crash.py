"""Kill the line at random moments (SIGKILL), resume, repeat: nothing produced twice,
nothing lost, the cards in the modules rejected and remade, the chip report true."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from cardperso.production import audit, invariants, repo
from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    ChipState,
    JobState,
    RejectBinEntry,
    StockCard,
    StockState,
)

from .support import Staff, setup_batch

WORKER = Path(__file__).with_name("crash_worker.py")
MODULES = ("M1", "M2")
KILL_ROUNDS = 8


def _spawn(url: str, batch_id: int, module: str, seed: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(batch_id), module, str(seed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_and_resume(db: Database, db_url: str, staff: Staff, cipher: SoftFieldCipher) -> None:
    rng = random.Random(20260105)
    n_jobs = 100
    batch_id = setup_batch(db, staff, cipher, n_jobs, 400, max_attempts=100)
    kills = 0
    for round_no in range(KILL_ROUNDS + 1):
        last = round_no == KILL_ROUNDS  # the last round runs to the end
        with db.reader() as s:
            started = sum(repo.progress(s, batch_id).attempts.values())
        procs = [_spawn(db_url, batch_id, m, rng.randrange(1 << 30)) for m in MODULES]
        # Kill only once the workers are really at work (their start-up time varies
        # with the machine's load), then at a random moment of their work.
        ready_by = time.monotonic() + 60
        while not last and time.monotonic() < ready_by and any(p.poll() is None for p in procs):
            with db.reader() as s:
                if sum(repo.progress(s, batch_id).attempts.values()) > started:
                    break
            time.sleep(0.01)
        deadline = time.monotonic() + (120 if last else rng.uniform(0.05, 0.4))
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.01)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)  # our own child, by its pid
                kills += 1
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
        with db.transaction() as s:
            repo.resume_batch(s, batch_id, by=staff.operator, when=db.now())
        with db.reader() as s:
            assert invariants.consistency_problems(s, batch_id) == [], round_no
            if repo.progress(s, batch_id).done:
                break
    with db.transaction() as s:
        assert repo.complete_if_done(s, batch_id, when=db.now())
    assert kills >= 4  # the batch outlived several kill rounds
    with db.reader() as s:
        assert invariants.consistency_problems(s, batch_id) == []
        p = repo.progress(s, batch_id)
        assert p.jobs[JobState.GOOD] == n_jobs == p.total  # none lost
        per_job = s.execute(
            select(Attempt.job_id, func.count())
            .where(Attempt.outcome == AttemptOutcome.GOOD)
            .group_by(Attempt.job_id)
        ).all()
        assert len(per_job) == n_jobs and {n for _, n in per_job} == {1}  # none twice
        interrupted = s.scalar(
            select(func.count())
            .select_from(RejectBinEntry)
            .where(RejectBinEntry.reason == repo.INTERRUPTED)
        )
        assert interrupted and interrupted >= 1  # cards in modules were rejected, remade
        report = repo.chip_report(s, batch_id)
        assert len({r.chip_serial for r in report}) == len(report)
        assert sum(r.state is ChipState.USED_GOOD for r in report) == n_jobs
        spoiled = sum(r.state is ChipState.SPOILED for r in report)
        used_cards = s.execute(
            select(StockCard.state, func.count())
            .where(StockCard.batch_id == batch_id)
            .group_by(StockCard.state)
        ).all()
        assert dict(used_cards) == {StockState.CONSUMED: n_jobs, StockState.SPOILED: spoiled}
        assert audit.verify_chain(s) == []
