"""Batches are accepted whole or refused whole; records are sealed, PANs masked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from cardperso.errors import InputError
from cardperso.production import repo
from cardperso.production.crypto_fields import FieldCipherError, SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import AuditLog, Batch, CardJob, JobState

from .support import Staff, pan_for, records, setup_batch


def _counts(db: Database) -> tuple[int, int, int]:
    with db.reader() as s:
        return (
            s.scalar(select(func.count()).select_from(Batch)) or 0,
            s.scalar(select(func.count()).select_from(CardJob)) or 0,
            s.scalar(select(func.count()).select_from(AuditLog)) or 0,
        )


def _import(db: Database, staff: Staff, cipher: SoftFieldCipher, recs, **kw):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        issuer = repo.register_issuer(s, "BANK1", "First Test Bank", when=db.now())
        profile = repo.register_profile(s, "debit", 1, "id: debit\n", when=db.now())
        return repo.create_batch(
            s,
            issuer=issuer,
            profile=profile,
            reference=kw.pop("reference", "FILE-001"),
            records=recs,
            cipher=cipher,
            by=staff.supervisor,
            when=db.now(),
            **kw,
        ).id


def test_batch_with_its_jobs(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = _import(db, staff, cipher, records(2500), chunk=1000)
    with db.reader() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None and batch.record_count == 2500
        jobs = s.scalars(
            select(CardJob).where(CardJob.batch_id == batch_id).order_by(CardJob.seq)
        ).all()
        assert [j.seq for j in jobs] == list(range(1, 2501))
        assert {j.state for j in jobs} == {JobState.PENDING}
        assert jobs[0].pan_masked == "400000******0000"
        assert jobs[7].pan_masked == pan_for(7)[:6] + "******" + pan_for(7)[-4:]
        assert repo.open_record(jobs[7], cipher) == next(iter(records(1, 7))).record
        found = repo.find_jobs_by_pan(s, cipher, pan_for(7))
        assert [j.id for j in found] == [jobs[7].id]
        # a sealed record moved to another row no longer opens
        jobs[7].seq += 1
        with pytest.raises(FieldCipherError):
            repo.open_record(jobs[7], cipher)


def _failing_after(n: int) -> Iterator[repo.JobRecord]:
    yield from records(n)
    raise RuntimeError("issuer file read error")


def test_failure_mid_insert_leaves_no_rows(
    db: Database, staff: Staff, cipher: SoftFieldCipher
) -> None:
    before = _counts(db)
    with pytest.raises(RuntimeError, match="read error"):
        _import(db, staff, cipher, _failing_after(2300), chunk=1000)  # 2 chunks already sent
    assert _counts(db) == before
    # and the same file imports cleanly afterwards
    _import(db, staff, cipher, records(10))
    assert _counts(db)[:2] == (before[0] + 1, before[1] + 10)


@pytest.mark.parametrize(
    ("bad_index", "bad", "field"),
    [
        (1500, repo.JobRecord("R-dup", pan_for(3), b"x"), "pan"),  # PAN repeats record 4
        (1700, repo.JobRecord("R-bad", "4111 1111 11", b"x"), "pan"),  # too short
        (1100, repo.JobRecord("R" * 65, pan_for(99999), b"x"), "record_ref"),
        (1200, repo.JobRecord("R-seq", pan_for(99998), b"x", seq=5), "seq"),
    ],
)
def test_bad_record_refuses_the_whole_batch(
    db: Database,
    staff: Staff,
    cipher: SoftFieldCipher,
    bad_index: int,
    bad: repo.JobRecord,
    field: str,
) -> None:
    recs = list(records(2000))
    recs.insert(bad_index, bad)
    before = _counts(db)
    with pytest.raises(InputError) as info:
        _import(db, staff, cipher, recs, chunk=500)
    assert info.value.field == field
    assert info.value.line == bad_index + 1
    assert pan_for(3) not in str(info.value)
    assert _counts(db) == before


def test_reference_imported_once(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    _import(db, staff, cipher, records(3))
    with pytest.raises(InputError, match="already imported"):
        _import(db, staff, cipher, records(3, start=10))
    with pytest.raises(InputError, match="at least one record"):
        _import(db, staff, cipher, iter(()), reference="EMPTY")


def test_profile_versions_are_immutable(db: Database) -> None:
    with db.transaction() as s:
        p1 = repo.register_profile(s, "debit", 1, "a: 1\n", when=db.now())
        assert repo.register_profile(s, "debit", 1, "a: 1\n", when=db.now()).id == p1.id
        p2 = repo.register_profile(s, "debit", 2, "a: 2\n", when=db.now())
        assert p2.id != p1.id
        with pytest.raises(InputError, match="other content"):
            repo.register_profile(s, "debit", 1, "a: 3\n", when=db.now())


def test_presort_order_is_claim_order(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    recs = [
        repo.JobRecord(f"R{i}", pan_for(i), b"r", seq=seq) for i, seq in enumerate([30, 10, 20])
    ]
    batch_id = _import(db, staff, cipher, recs)
    with db.transaction() as s:
        repo.start_batch(s, batch_id, by=staff.operator, when=db.now())
    got = []
    for _ in range(3):
        with db.transaction() as s:
            job = repo.claim_next_job(s, batch_id, "M1", when=db.now())
            assert job is not None
            got.append(job.record_ref)
    assert got == ["R1", "R2", "R0"]


def test_setup_helper(db: Database, staff: Staff, cipher: SoftFieldCipher) -> None:
    batch_id = setup_batch(db, staff, cipher, 5, 7)
    with db.reader() as s:
        p = repo.progress(s, batch_id)
    assert p.jobs[JobState.PENDING] == 5 and p.total == 5 and not p.done
