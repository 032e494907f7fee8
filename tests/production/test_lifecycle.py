"""Attempts, the reject bin, remakes, chip usage, crash recovery and batch states."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cardperso.errors import InputError
from cardperso.production import invariants, repo
from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    BatchState,
    CardJob,
    ChipState,
    ChipUsage,
    InvalidTransition,
    JobState,
    RejectBinEntry,
    StockCard,
    StockKind,
    StockState,
)

from .support import Staff, serials, setup_batch


def _begin(db: Database, batch_id: int, module: str = "M1") -> int:
    with db.transaction() as s:
        att = repo.begin_attempt(s, batch_id, module, when=db.now())
        assert att is not None
        return att.id


def test_reject_and_remake_links(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 1, 5)
    first = _begin(db, batch_id)
    with db.transaction() as s:
        repo.record_station(s, first, "init", True, when=db.now())
        repo.record_station(s, first, "perso", False, when=db.now(), detail={"sw": "6581"})
        entry = repo.reject(s, first, station="perso", reason="SW 6581", when=db.now())
        assert entry.attempt_id == first
    second = _begin(db, batch_id, "M2")
    with db.transaction() as s:
        repo.mark_good(s, second, when=db.now())
    with db.reader() as s:
        chain = repo.remake_chain(s, s.get(Attempt, first).job_id)  # type: ignore[union-attr]
        assert [a.id for a in chain] == [first, second]
        assert chain[1].remake_of_id == first and chain[0].remake_of_id is None
        assert [a.outcome for a in chain] == [AttemptOutcome.REJECTED, AttemptOutcome.GOOD]
        assert [r["station"] for r in chain[0].station_results] == ["init", "perso"]
        assert chain[0].station_results[1]["detail"] == {"sw": "6581"}
        binned = s.scalars(select(RejectBinEntry)).one()
        assert (binned.attempt_id, binned.station, binned.reason) == (first, "perso", "SW 6581")
        usage = {u.chip_serial: u for u in s.scalars(select(ChipUsage))}
        assert usage[chain[0].chip_serial].state is ChipState.SPOILED
        assert usage[chain[1].chip_serial].state is ChipState.USED_GOOD
        assert usage[chain[1].chip_serial].attempt_id == second
        cards = {c.serial: c.state for c in s.scalars(select(StockCard))}
        assert cards[chain[0].chip_serial] is StockState.SPOILED
        assert cards[chain[1].chip_serial] is StockState.CONSUMED
        assert invariants.consistency_problems(s, batch_id) == []


def test_finished_attempts_are_final(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 1, 3)
    att = _begin(db, batch_id)
    with db.transaction() as s:
        repo.mark_good(s, att, when=db.now())
    for action in (
        lambda s: repo.mark_good(s, att, when=db.now()),
        lambda s: repo.reject(s, att, station="qc", reason="x", when=db.now()),
        lambda s: repo.record_station(s, att, "qc", True, when=db.now()),
    ):
        with pytest.raises(InvalidTransition), db.transaction() as s:
            action(s)
    with db.transaction() as s:
        assert repo.begin_attempt(s, batch_id, "M1", when=db.now()) is None


def test_held_after_max_attempts(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 1, 10, max_attempts=2)
    for _ in range(2):
        att = _begin(db, batch_id)
        with db.transaction() as s:
            repo.reject(s, att, station="perso", reason="bad", when=db.now())
    with db.reader() as s:
        job = s.scalars(select(CardJob)).one()
        assert job.state is JobState.HELD and job.attempt_count == 2
    with db.transaction() as s:
        assert repo.begin_attempt(s, batch_id, "M1", when=db.now()) is None
    with pytest.raises(Exception, match="may not release job"), db.transaction() as s:
        repo.release_held(s, job.id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        repo.release_held(s, job.id, by=staff.supervisor, when=db.now())
    att = _begin(db, batch_id)
    with db.transaction() as s:
        repo.mark_good(s, att, when=db.now())
        assert repo.complete_if_done(s, batch_id, when=db.now())
    with db.reader() as s:
        assert invariants.consistency_problems(s, batch_id) == []
        assert len(repo.remake_chain(s, job.id)) == 3


def test_out_of_stock_rolls_back_the_claim(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    batch_id = setup_batch(db, staff, cipher, 2, 1)
    _begin(db, batch_id)
    with pytest.raises(repo.OutOfStock), db.transaction() as s:
        repo.begin_attempt(s, batch_id, "M2", when=db.now())
    with db.reader() as s:
        assert repo.progress(s, batch_id).jobs[JobState.PENDING] == 1
    with db.transaction() as s:  # pre-initialized stock is a separate pool
        repo.receive_stock(
            s,
            serials(2, "B2"),
            kind=StockKind.PRE_INITIALIZED,
            product="debit",
            by=staff.operator,
            when=db.now(),
        )
    with pytest.raises(repo.OutOfStock), db.transaction() as s:
        repo.begin_attempt(s, batch_id, "M2", when=db.now())
    with db.transaction() as s:
        att = repo.begin_attempt(
            s, batch_id, "M2", when=db.now(), kind=StockKind.PRE_INITIALIZED, product="debit"
        )
        assert att is not None and att.chip_serial.startswith("B2")


def test_chip_serials_are_unique(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 1, 3)
    att = _begin(db, batch_id)
    with db.transaction() as s:
        repo.mark_good(s, att, when=db.now())
        serial = s.get(Attempt, att).chip_serial  # type: ignore[union-attr]
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(ChipUsage(chip_serial=serial, state=ChipState.SPOILED, recorded_at=db.now()))
        s.flush()
    with pytest.raises(InputError, match="already known"), db.transaction() as s:
        repo.receive_stock(s, [serial], kind=StockKind.BLANK, by=staff.operator, when=db.now())
    with pytest.raises(InputError, match="repeats"), db.transaction() as s:
        repo.receive_stock(s, ["C1", "c1"], kind=StockKind.BLANK, by=staff.operator, when=db.now())
    assert repo.normalize_serial(bytes.fromhex("0102a0ff00000001")) == "0102A0FF00000001"
    with pytest.raises(InputError):
        repo.normalize_serial("not hex")


def test_recover_in_flight(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 5, 12)
    done = _begin(db, batch_id, "M1")
    with db.transaction() as s:
        repo.mark_good(s, done, when=db.now())
    in_module = [_begin(db, batch_id, m) for m in ("M2", "M3")]
    with db.transaction() as s:
        repo.record_station(s, in_module[0], "perso", True, when=db.now())
    # claims committed separately, no attempt yet (a line that claims step by step)
    with db.transaction() as s:
        job = repo.claim_next_job(s, batch_id, "M4", when=db.now())
        card = repo.claim_stock_card(
            s, kind=StockKind.BLANK, module_id="M4", batch_id=batch_id, when=db.now()
        )
        assert job is not None and card is not None
        stray_serial = card.serial
    # crash here; a supervisor resumes
    with db.transaction() as s:
        rec = repo.resume_batch(s, batch_id, by=staff.supervisor, when=db.now())
    assert sorted(rec.rejected_attempts) == sorted(in_module)
    assert rec.requeued_jobs == [job.id]
    assert rec.spoiled_cards == [stray_serial]
    with db.reader() as s:
        p = repo.progress(s, batch_id)
        assert p.jobs[JobState.GOOD] == 1 and p.jobs[JobState.PENDING] == 4
        assert p.jobs[JobState.IN_PROGRESS] == 0
        reasons = {r.attempt_id: (r.station, r.reason) for r in s.scalars(select(RejectBinEntry))}
        assert reasons[in_module[0]] == ("perso", "interrupted")
        assert reasons[in_module[1]] == ("unknown", "interrupted")
        stray = s.scalars(select(ChipUsage).where(ChipUsage.chip_serial == stray_serial)).one()
        assert stray.state is ChipState.SPOILED and stray.attempt_id is None
        assert invariants.consistency_problems(s, batch_id) == []
    with db.transaction() as s:  # idempotent
        again = repo.recover_in_flight(s, batch_id, when=db.now(), actor="test")
        assert again == repo.Recovery()
    # the remade jobs finish on new cards
    while True:
        with db.transaction() as s:
            att = repo.begin_attempt(s, batch_id, "M1", when=db.now())
            if att is None:
                break
            repo.mark_good(s, att, when=db.now())
    with db.transaction() as s:
        assert repo.complete_if_done(s, batch_id, when=db.now())
    with db.reader() as s:
        assert invariants.consistency_problems(s, batch_id) == []
        goods = s.scalar(select(func.count()).select_from(Attempt).where(Attempt.outcome == "good"))
        assert goods == 5


def test_batch_states_and_cancel(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 4, 6)
    att = _begin(db, batch_id)
    with pytest.raises(InvalidTransition, match="cards in modules"), db.transaction() as s:
        repo.cancel_batch(s, batch_id, by=staff.supervisor, when=db.now())
    with db.transaction() as s:
        repo.mark_good(s, att, when=db.now())
    with pytest.raises(InvalidTransition, match="use resume"), db.transaction() as s:
        repo.start_batch(s, batch_id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        repo.pause_batch(s, batch_id, by=staff.operator, when=db.now())
    with pytest.raises(InvalidTransition), db.transaction() as s:
        repo.pause_batch(s, batch_id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        b = repo.cancel_batch(s, batch_id, by=staff.supervisor, when=db.now(), reason="issuer")
        assert b.state is BatchState.CANCELLED
    with db.reader() as s:
        p = repo.progress(s, batch_id)
        assert p.jobs[JobState.GOOD] == 1 and p.jobs[JobState.CANCELLED] == 3
    with pytest.raises(InvalidTransition), db.transaction() as s:
        repo.resume_batch(s, batch_id, by=staff.supervisor, when=db.now())


@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_run(db: Database, staff: Staff, cipher: SoftFieldCipher, seed: int) -> None:
    """A run with random failures and crashes: each job ends bound to one good chip."""
    rng = random.Random(seed)
    n_jobs = 40
    batch_id = setup_batch(db, staff, cipher, n_jobs, 200, max_attempts=50)
    modules = ["M1", "M2", "M3"]
    open_attempts: dict[str, int] = {}
    for _step in range(2000):
        module = rng.choice(modules)
        if module not in open_attempts:
            with db.transaction() as s:
                att = repo.begin_attempt(s, batch_id, module, when=db.now())
                if att is not None:
                    open_attempts[module] = att.id
            if not open_attempts:
                break
            continue
        att_id = open_attempts.pop(module)
        roll = rng.random()
        with db.transaction() as s:
            repo.record_station(s, att_id, "perso", roll > 0.15, when=db.now())
            if roll < 0.15:
                repo.reject(s, att_id, station="perso", reason="card error", when=db.now())
            elif roll < 0.25:
                repo.reject(s, att_id, station="qc", reason="vision", when=db.now())
            else:
                repo.mark_good(s, att_id, when=db.now())
        if rng.random() < 0.03:  # crash: forget every open attempt, resume
            open_attempts.clear()
            with db.transaction() as s:
                repo.resume_batch(s, batch_id, by=staff.operator, when=db.now())
    with db.transaction() as s:
        assert repo.complete_if_done(s, batch_id, when=db.now())
    with db.reader() as s:
        assert invariants.consistency_problems(s, batch_id) == []
        goods = s.execute(
            select(Attempt.job_id, func.count())
            .where(Attempt.outcome == AttemptOutcome.GOOD)
            .group_by(Attempt.job_id)
        ).all()
        assert len(goods) == n_jobs and {n for _, n in goods} == {1}
        report = repo.chip_report(s, batch_id)
        assert len({r.chip_serial for r in report}) == len(report)
        assert sum(r.state is ChipState.USED_GOOD for r in report) == n_jobs
