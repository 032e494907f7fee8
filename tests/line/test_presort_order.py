"""The line makes cards in postal order: jobs are numbered by (country, region, local
code, file position) at import, and the line claims them in that order."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from cardperso.dataprep.prepared import PreparedCard
from cardperso.hsm import Role, SoftHsm
from cardperso.production import repo
from cardperso.production.db import Database
from cardperso.production.fieldkeys import field_cipher
from cardperso.production.models import CardJob
from production.support import Staff

from .kit import import_product


def test_jobs_are_numbered_in_postal_order(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    batch_id = import_product(sqlite_db, hsm, Staff(sqlite_db), "debit", 60, tmp_path)
    with sqlite_db.reader() as s, hsm.session(Role.PERSONALIZATION, "t") as session:
        cipher = field_cipher(session)
        jobs = s.scalars(
            select(CardJob).where(CardJob.batch_id == batch_id).order_by(CardJob.seq)
        ).all()
        cards = [PreparedCard.from_line(repo.open_record(j, cipher)) for j in jobs]
    keys = [c.presort for c in cards]
    assert keys == sorted(keys) and len(set(keys)) > 5
    assert [j.seq for j in jobs] == list(range(1, 61))
    # the file was not already in postal order: the line's order is the presort's
    positions = [c.seq for c in cards]
    assert positions != sorted(positions)
