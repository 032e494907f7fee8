"""Concurrent claims never hand out the same job or stock card twice."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import select

from cardperso.production import invariants, repo
from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import CardJob, JobState, StockCard, StockKind, StockState

from .support import Staff, setup_batch

THREADS = 6


def _run_threads(target, n: int = THREADS) -> list[BaseException]:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapped(k: int) -> None:
        try:
            barrier.wait()
            target(k)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_concurrent_job_claims(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    n_jobs = 120
    batch_id = setup_batch(db, staff, cipher, n_jobs, 0)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        module = f"M{k}"
        while True:
            with db.transaction() as s:
                job = repo.claim_next_job(s, batch_id, module, when=db.now())
                if job is None:
                    return
                got = (module, job.id)
            with lock:
                claimed.append(got)

    assert _run_threads(worker) == []
    ids = Counter(job_id for _, job_id in claimed)
    assert len(ids) == n_jobs and max(ids.values()) == 1
    assert len({m for m, _ in claimed}) > 1  # the work really was shared
    with db.reader() as s:
        rows = s.execute(
            select(CardJob.id, CardJob.state, CardJob.module_id).where(CardJob.batch_id == batch_id)
        ).all()
    owner = dict(claimed)
    by_job = {job_id: module for module, job_id in claimed}
    assert owner  # silence unused
    for job_id, state, module in rows:
        assert state is JobState.IN_PROGRESS and by_job[job_id] == module


def test_concurrent_stock_claims(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    n_cards = 90
    batch_id = setup_batch(db, staff, cipher, 1, n_cards)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        while True:
            with db.transaction() as s:
                card = repo.claim_stock_card(
                    s, kind=StockKind.BLANK, module_id=f"M{k}", batch_id=batch_id, when=db.now()
                )
                if card is None:
                    return
                serial = card.serial
            with lock:
                claimed.append(serial)

    assert _run_threads(worker) == []
    assert len(claimed) == n_cards == len(set(claimed))
    with db.reader() as s:
        states = set(s.scalars(select(StockCard.state)).all())
    assert states == {StockState.CLAIMED}


def test_concurrent_full_attempts(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    """Several modules run a whole batch at once: one good chip per job, no chip twice."""
    n_jobs = 60
    batch_id = setup_batch(db, staff, cipher, n_jobs, n_jobs + 40)

    def worker(k: int) -> None:
        module = f"M{k}"
        i = 0
        while True:
            with db.transaction() as s:
                att = repo.begin_attempt(s, batch_id, module, when=db.now())
                att_id = att.id if att is not None else None
            if att_id is None:
                # "Nothing to claim" is not "finished": a job another module is
                # rejecting right now comes back pending (SKIP LOCKED skipped it).
                with db.reader() as s:
                    jobs = repo.progress(s, batch_id).jobs
                    if not jobs[JobState.PENDING] and not jobs[JobState.IN_PROGRESS]:
                        return
                time.sleep(0.005)
                continue
            i += 1
            with db.transaction() as s:
                if (att_id + k) % 5 == 0:
                    repo.reject(s, att_id, station="perso", reason="6581", when=db.now())
                else:
                    repo.mark_good(s, att_id, when=db.now())

    assert _run_threads(worker, 4) == []
    with db.transaction() as s:
        assert repo.complete_if_done(s, batch_id, when=db.now())
    with db.reader() as s:
        assert invariants.consistency_problems(s, batch_id) == []
        p = repo.progress(s, batch_id)
        assert p.done and p.chips_good == n_jobs
        report = repo.chip_report(s, batch_id)
        assert len({r.chip_serial for r in report}) == len(report) == n_jobs + p.chips_spoiled


def test_no_claims_unless_running(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 3, 3, start=False)
    with db.transaction() as s:
        assert repo.claim_next_job(s, batch_id, "M1", when=db.now()) is None
        repo.start_batch(s, batch_id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        assert repo.claim_next_job(s, batch_id, "M1", when=db.now()) is not None
        repo.pause_batch(s, batch_id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        assert repo.claim_next_job(s, batch_id, "M2", when=db.now()) is None
