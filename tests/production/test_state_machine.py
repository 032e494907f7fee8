"""Property tests: the job/batch state tables, and random line histories (claims,
good cards, rejects, crashes with recovery) that must keep every batch invariant."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cardperso.production import invariants, repo
from cardperso.production.db import Database, upgrade
from cardperso.production.models import (
    BATCH_TRANSITIONS,
    JOB_TRANSITIONS,
    Batch,
    BatchState,
    CardJob,
    InvalidTransition,
    JobState,
)

from .support import Staff, TickClock, make_cipher, setup_batch


@given(st.sampled_from(list(JobState)), st.lists(st.sampled_from(list(JobState)), max_size=12))
def test_job_moves_follow_the_table(start: JobState, moves: list[JobState]) -> None:
    job = CardJob(state=start)
    for new in moves:
        before = job.state
        if new in JOB_TRANSITIONS[before]:
            job.move_to(new)
            assert job.state is new
        else:
            with pytest.raises(InvalidTransition):
                job.move_to(new)
            assert job.state is before


@given(st.sampled_from(list(BatchState)), st.lists(st.sampled_from(list(BatchState)), max_size=8))
def test_batch_moves_follow_the_table(start: BatchState, moves: list[BatchState]) -> None:
    batch = Batch(state=start)
    for new in moves:
        allowed = new in BATCH_TRANSITIONS[batch.state]
        if allowed:
            batch.move_to(new)
        else:
            with pytest.raises(InvalidTransition):
                batch.move_to(new)
    assert not BATCH_TRANSITIONS[BatchState.DONE] and not JOB_TRANSITIONS[JobState.GOOD]


_TEMPLATE: list[Path] = []


def _fresh_db() -> tuple[Database, Path]:
    if not _TEMPLATE:
        home = Path(tempfile.mkdtemp(prefix="cardperso-sm-"))
        atexit.register(shutil.rmtree, home, True)
        path = home / "template.sqlite3"
        upgrade(f"sqlite:///{path}")
        _TEMPLATE.append(path)
    work = Path(tempfile.mkdtemp(prefix="cardperso-sm-"))
    shutil.copyfile(_TEMPLATE[0], work / "db.sqlite3")
    db = Database.open(f"sqlite:///{work / 'db.sqlite3'}", clock=TickClock(), synchronous="OFF")
    return db, work


MODULES = st.sampled_from(["M1", "M2", "M3"])
N_JOBS = 6


class LineHistory(RuleBasedStateMachine):
    """Modules take jobs, finish or reject cards, and the line crashes now and then."""

    @initialize()
    def setup(self) -> None:
        self.db, self.work = _fresh_db()
        self.staff = Staff(self.db)
        self.batch_id = setup_batch(self.db, self.staff, make_cipher(), N_JOBS, 80, max_attempts=3)
        self.open: dict[str, int] = {}

    @rule(module=MODULES)
    def begin(self, module: str) -> None:
        if module in self.open:
            return
        with self.db.transaction() as s:
            att = repo.begin_attempt(s, self.batch_id, module, when=self.db.now())
            if att is not None:
                self.open[module] = att.id

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), good=st.booleans())
    def finish(self, data: st.DataObject, good: bool) -> None:
        module = data.draw(st.sampled_from(sorted(self.open)))
        att_id = self.open.pop(module)
        with self.db.transaction() as s:
            if good:
                repo.mark_good(s, att_id, when=self.db.now())
            else:
                repo.reject(s, att_id, station="perso", reason="6581", when=self.db.now())

    @rule()
    def crash_and_resume(self) -> None:
        self.open.clear()
        with self.db.transaction() as s:
            repo.resume_batch(s, self.batch_id, by=self.staff.operator, when=self.db.now())

    @rule()
    def release_held(self) -> None:
        with self.db.reader() as s:
            held = [j.id for j in s.query(CardJob).filter(CardJob.state == JobState.HELD).all()]
        for job_id in held:
            with self.db.transaction() as s:
                repo.release_held(s, job_id, by=self.staff.supervisor, when=self.db.now())

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "db"):
            with self.db.reader() as s:
                assert invariants.consistency_problems(s, self.batch_id) == []
                p = repo.progress(s, self.batch_id)
                assert p.total == N_JOBS
                assert p.jobs[JobState.IN_PROGRESS] == len(self.open)

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.dispose()
            shutil.rmtree(self.work, ignore_errors=True)


LineHistory.TestCase.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
test_line_history = LineHistory.TestCase
