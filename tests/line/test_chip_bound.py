"""Chip-bound data sets: a record that names its chip goes into that chip only.

The issuer's file names, for some records, the chip serial it was prepared for.
The line puts each such record into that chip and no other, never gives a reserved
chip to another record, does not remake a bound record on another chip, and the
chip report tells the issuer which prepared sets were not used and why.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.errors import InputError
from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder, stock_serials
from cardperso.line.orchestrator import LineConfig
from cardperso.line.reports import write_chip_report
from cardperso.line.usecases import import_batch, receive_stock, run_batch
from cardperso.production.db import Database
from cardperso.production.models import Attempt, AttemptOutcome, CardJob, JobState
from cardperso.profiles.loader import _builtin_dir, parse_profile
from cardperso.profiles.schema import Profile
from cardperso.readers import Reader
from cardperso.readers.virtual import VirtualReader
from production.support import Staff

from .kit import TODAY, DeadCard

SEED = "chip-bound"
MISSING = "00000000DEADBEEF"


def bound_debit() -> Profile:
    doc = yaml.safe_load((_builtin_dir() / "debit.yaml").read_text(encoding="utf-8"))
    doc["input"]["fields"].append(
        {
            "name": "chip_serial",
            "rule": "hex",
            "required": False,
            "min_length": 16,
            "max_length": 16,
            "meaning": "chip_serial",
        }
    )
    return parse_profile(yaml.safe_dump(doc, sort_keys=False), "debit-bound.yaml")


def bind(path: Path, serials: dict[int, str]) -> None:
    """Add the chip_serial column: record i (from 0) gets serials[i], others none."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header, columns, rows = lines[0], lines[1], lines[2:]
    out = [header, columns + ",chip_serial"]
    out += [row + "," + serials.get(i, "") for i, row in enumerate(rows)]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def test_bound_records_go_into_their_chip_only_and_unused_sets_are_reported(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    db, staff = sqlite_db, Staff(sqlite_db)
    stock = stock_serials(SEED, 0, 30)
    # records 0-3 bound to stock chips 20-23 (delivered last), record 4 to a chip
    # that never arrives; chip 22 is dead
    bound = {0: stock[20], 1: stock[21], 2: stock[22], 3: stock[23], 4: MISSING}
    path = tmp_path / "issuer.csv"
    generate_issuer_file("debit", path, 12, 3, today=TODAY, batch_id="BOUND-1")
    bind(path, bound)
    profile = bound_debit()
    imported = import_batch(
        db, hsm, path, by=staff.supervisor, today=TODAY, resolver=lambda name, v: profile
    )
    receive_stock(db, stock, by=staff.operator, lot="BOUND")

    def dead(module: str, serial: str, reader: Reader) -> Reader:
        assert isinstance(reader, VirtualReader)
        return DeadCard(reader) if serial == stock[22] else reader

    result = run_batch(
        db,
        hsm,
        imported.batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(SEED, fault=dead),
        config=LineConfig(modules=3, seed="bound"),
    )
    assert result.good == 10 and not result.batch_done
    with db.reader() as s:
        # by file position (the record reference ends in it; seq is the postal order)
        jobs = {
            int(j.record_ref.rsplit("/", 1)[1]): j
            for j in s.scalars(select(CardJob).order_by(CardJob.seq))
        }
        attempts = s.scalars(select(Attempt)).all()
    good = {a.job_id: a.chip_serial for a in attempts if a.outcome is AttemptOutcome.GOOD}
    by_job: dict[int, list[Attempt]] = {}
    for a in attempts:
        by_job.setdefault(a.job_id, []).append(a)
    for i, serial in bound.items():
        job = jobs[i + 1]
        assert job.bound_serial == serial
        # every attempt of a bound job used its own chip
        assert all(a.chip_serial == serial for a in by_job.get(job.id, []))
    assert good[jobs[1].id] == stock[20] and good[jobs[4].id] == stock[23]
    # the dead chip: one rejected attempt, no remake on another chip; the missing one: none
    assert jobs[3].state is JobState.HELD and len(by_job[jobs[3].id]) == 1
    assert jobs[5].state is JobState.HELD and jobs[5].id not in by_job
    # reserved chips never went to an unbound record
    reserved = set(bound.values())
    for seq, job in jobs.items():
        if job.bound_serial is None:
            assert good[job.id] not in reserved, seq
    report = tmp_path / "chips.csv"
    with db.reader() as s:
        write_chip_report(s, imported.batch_id, report)
    unused = [r for r in csv.DictReader(report.open()) if r["state"] == "set_unused"]
    assert sorted((r["chip_serial"], r["seq"]) for r in unused) == sorted(
        [(stock[22], str(jobs[3].seq)), (MISSING, str(jobs[5].seq))]
    )
    unused.sort(key=lambda r: r["chip_serial"] != stock[22])
    assert unused[0]["reason"].startswith("chip spoiled") and "not available" in unused[1]["reason"]


def test_a_batch_naming_one_chip_twice_is_refused(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    path = tmp_path / "issuer.csv"
    generate_issuer_file("debit", path, 3, 4, today=TODAY, batch_id="BOUND-2")
    bind(path, {0: "0102030405060708", 2: "0102030405060708"})
    profile = bound_debit()
    with pytest.raises(InputError, match="chip serial repeats record 1") as err:
        import_batch(
            sqlite_db, hsm, path, by=staff.supervisor, today=TODAY, resolver=lambda n, v: profile
        )
    assert err.value.field == "chip_serial" and err.value.line == 3
    with sqlite_db.reader() as s:
        assert s.scalars(select(CardJob)).first() is None
