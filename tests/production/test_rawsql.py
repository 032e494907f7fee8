"""The line's hot path on the driver's cursor (FastExecutor through Database.hot_path):
the same rows, types and row counts as SQLAlchemy's own execution, transactions that
commit or roll back whole, and concurrent claims that never share a job or a card."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from cardperso.production import repo
from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    CardJob,
    JobState,
    StockKind,
)
from cardperso.production.rawsql import FAST_EXECUTOR, FastExecutor

from .support import Staff, setup_batch


def test_prebuilt_statements_answer_as_sqlalchemy_does(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    batch_id = setup_batch(db, staff, cipher, 4, 6)
    hot = db.hot_path()
    try:
        with hot.transaction() as s:
            claim = repo.claim_for_module(s, batch_id, "M01", when=db.now())
            assert claim is not None
        statements = [
            (repo._NEXT_JOB, {"b": batch_id}),
            (repo._NEXT_CARD[False], {"kind": StockKind.BLANK, "product": None}),
            (repo._OPEN_ATTEMPT, {"a": claim.attempt_id}),
            (repo._LAST_ATTEMPT, {"j": claim.job_id}),
        ]
        with db.reader() as s:
            conn = s.connection()
            fast = FastExecutor(conn)
            for stmt, params in statements:
                expected = [tuple(r) for r in conn.execute(stmt, params).all()]
                got = [tuple(r) for r in fast.execute(stmt, params).all()]
                assert got == expected, stmt
                assert [type(v) for v in got[0]] == [type(v) for v in expected[0]]
            row = fast.execute(repo._OPEN_ATTEMPT, {"a": claim.attempt_id}).first()
            assert row.outcome is AttemptOutcome.IN_PROGRESS  # enum text back to the enum
            assert row.station_results == []  # JSON back to a list
        # a good card through the hot path: the rows say so, read by the ORM
        with hot.transaction() as s:
            repo.mark_good(s, claim.attempt_id, when=db.now(), stations=[("chip", {"n": "1"})])
        with db.reader() as s:
            attempt = s.get(Attempt, claim.attempt_id)
            job = s.get(CardJob, claim.job_id)
            assert attempt is not None and job is not None
            assert attempt.outcome is AttemptOutcome.GOOD and attempt.ended_at is not None
            assert attempt.station_results[0]["station"] == "chip"
            assert job.state is JobState.GOOD
    finally:
        hot.close()


def test_a_failed_hot_transaction_leaves_nothing(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    batch_id = setup_batch(db, staff, cipher, 2, 2)
    hot = db.hot_path()
    try:
        with pytest.raises(RuntimeError), hot.transaction() as s:
            assert isinstance(s.info[FAST_EXECUTOR], FastExecutor)
            assert repo.claim_for_module(s, batch_id, "M01", when=db.now()) is not None
            raise RuntimeError("the module fell over")
        with db.reader() as s:
            states = s.scalars(select(CardJob.state).where(CardJob.batch_id == batch_id)).all()
            assert set(states) == {JobState.PENDING}
            assert s.scalars(select(Attempt)).all() == []
        with hot.transaction() as s:  # the connection is usable again
            assert repo.claim_for_module(s, batch_id, "M01", when=db.now()) is not None
    finally:
        hot.close()


def test_hot_paths_of_many_threads_never_share_a_job_or_card(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    batch_id = setup_batch(db, staff, cipher, 60, 80)
    got: list[tuple[int, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def module(k: int) -> None:
        hot = db.hot_path()
        try:
            while True:
                with hot.transaction() as s:
                    claim = repo.claim_for_module(s, batch_id, f"M{k:02d}", when=db.now())
                if claim is None:
                    return
                with lock:
                    got.append((claim.job_id, claim.chip_serial))
        except BaseException as exc:
            errors.append(exc)
        finally:
            hot.close()

    threads = [threading.Thread(target=module, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(got) == 60
    assert len({j for j, _ in got}) == 60 and len({c for _, c in got}) == 60


def test_a_driver_error_arrives_as_sqlalchemy_reports_it_without_the_values(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    setup_batch(db, staff, cipher, 1, 1)
    hot = db.hot_path()
    secret_serial = "5A5A5A5A5A5A5A5A"
    try:
        with pytest.raises(sa_exc.IntegrityError) as caught, hot.transaction() as s:
            s.info[FAST_EXECUTOR].execute(
                repo._NEW_ATTEMPT,
                {
                    "job_id": 999_999,  # no such job: the foreign key refuses it
                    "batch_id": 999_999,
                    "attempt_no": 1,
                    "stock_card_id": 999_999,
                    "chip_serial": secret_serial,
                    "module_id": "M01",
                    "remake_of_id": None,
                    "started_at": db.now(),
                    "station_results": [],
                    "outcome": AttemptOutcome.IN_PROGRESS,
                },
            )
        assert secret_serial not in str(caught.value)
    finally:
        hot.close()
