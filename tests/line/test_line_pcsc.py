"""The line through pcscd: each chip module's slot is a vpcd reader of a private pcscd
(:class:`~cardperso.line.pcscfeeder.PcscFeeder`), so every APDU of the run crosses
PC/SC as it would to a card in a real contact station (skipped without pcscd/vpcd,
failing when ``CARDPERSO_REQUIRE_ALL=1``).

- A 100-card debit batch on two modules ends exactly as the same batch run in process:
  the same records good, in the same chips, with byte-identical chip memory and the
  same chip usage report.
- A card pulled out of its reader mid-personalization is rejected with the reader's
  reason and its record remade on a new card; every record ends with one good card.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.errors import ReaderError
from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.pcscfeeder import PcscFeeder
from cardperso.line.reports import write_chip_report
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database, upgrade
from cardperso.production.invariants import consistency_problems
from cardperso.production.models import Attempt, AttemptOutcome, CardJob, JobState, RejectBinEntry
from cardperso.readers import Reader
from cardperso.readers.virtual import VirtualReader
from production.support import Staff, TickClock
from readers.pcsc_rig import take_slots

from .kit import import_product, stock_seed

pytestmark = pytest.mark.realcomponent

PRODUCT = "debit"


class Keep:
    """A stock fault hook that changes nothing and keeps every card made, by serial."""

    def __init__(self) -> None:
        self.cards: dict[str, VirtualReader] = {}

    def __call__(self, module_id: str, serial: str, reader: Reader) -> Reader:
        assert isinstance(reader, VirtualReader)
        self.cards[serial] = reader
        return reader


def _database(path: Path) -> Database:
    url = f"sqlite:///{path}"
    upgrade(url)
    return Database.open(url, clock=TickClock(), synchronous="NORMAL")


@pytest.fixture
def second_db(tmp_path: Path) -> Iterator[Database]:
    db = _database(tmp_path / "pcsc.sqlite3")
    yield db
    db.dispose()


def _outcome(db: Database, batch_id: int) -> dict[str, list[tuple[str, str]]]:
    """record -> [(chip serial, outcome)] of its attempts, in order."""
    with db.reader() as s:
        assert consistency_problems(s, batch_id) == []
        jobs = {j.id: j for j in s.scalars(select(CardJob).where(CardJob.batch_id == batch_id))}
        assert jobs and all(j.state is JobState.GOOD for j in jobs.values())
        out: dict[str, list[tuple[str, str]]] = {}
        attempts = s.scalars(
            select(Attempt).where(Attempt.batch_id == batch_id).order_by(Attempt.attempt_no)
        )
        for a in attempts:
            out.setdefault(jobs[a.job_id].record_ref, []).append((a.chip_serial, a.outcome.value))
    for atts in out.values():
        assert sum(o == AttemptOutcome.GOOD.value for _, o in atts) == 1
    return out


def _chip_report(db: Database, batch_id: int, path: Path) -> list[list[str]]:
    with db.reader() as s:
        write_chip_report(s, batch_id, path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return sorted(r[:-1] for r in rows)  # all but the clock's "recorded"


def test_a_debit_batch_through_pcscd_equals_the_in_process_run(
    sqlite_db: Database, second_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    count = 100
    config = LineConfig(modules=2, seed="pcsc")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    local_cards = Keep()
    staff = Staff(sqlite_db)
    local_id = import_product(sqlite_db, hsm, staff, PRODUCT, count, tmp_path / "a")
    local = run_batch(
        sqlite_db, hsm, local_id, by=staff.operator, config=config,
        feeder=SimulatedFeeder(stock_seed(PRODUCT), fault=local_cards),
    )  # fmt: skip

    served_cards = Keep()
    staff2 = Staff(second_db)
    pcsc_id = import_product(second_db, hsm, staff2, PRODUCT, count, tmp_path / "b")
    feeder = PcscFeeder(
        take_slots(2),
        stock_seed(PRODUCT),
        stock=SimulatedFeeder(stock_seed(PRODUCT), fault=served_cards),
    )
    try:
        pcsc = run_batch(second_db, hsm, pcsc_id, by=staff2.operator, feeder=feeder, config=config)
    finally:
        feeder.close()

    for result in (local, pcsc):
        assert result.batch_done and result.stopped is None
        assert result.good == count and result.cards == count and not result.rejected
    assert set(pcsc.module_stats) == {"M01", "M02"}
    assert all(m.cards > 10 for m in pcsc.module_stats.values())  # both slots worked

    local_outcome = _outcome(sqlite_db, local_id)
    assert _outcome(second_db, pcsc_id) == local_outcome
    assert set(served_cards.cards) == set(local_cards.cards)
    for serial, card in served_cards.cards.items():
        assert card.memory() == local_cards.cards[serial].memory(), serial
    assert _chip_report(second_db, pcsc_id, tmp_path / "b.csv") == _chip_report(
        sqlite_db, local_id, tmp_path / "a.csv"
    )


def test_a_card_pulled_out_mid_personalization_is_remade_on_a_new_card(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    count, after = 4, 18  # a debit card's 18th command is a PUT KEY under SM (perso)
    staff = Staff(sqlite_db)
    batch_id = import_product(sqlite_db, hsm, staff, PRODUCT, count, tmp_path)
    slots = take_slots(2)
    feeder = PcscFeeder(slots, stock_seed(PRODUCT))
    pulled: list[tuple[str, str]] = []

    def pull_first(module_id: str, serial: str, reader: Reader) -> Reader:
        if not pulled:  # the first card fed is torn out after `after` commands
            pulled.append((serial, reader.name))
            feeder.slot(module_id).pull_after(after)
        return reader

    feeder.fault = pull_first
    try:
        result = run_batch(
            sqlite_db, hsm, batch_id, by=staff.operator, feeder=feeder,
            config=LineConfig(modules=2, seed="pulled"),
        )  # fmt: skip
    finally:
        feeder.close()
    assert result.batch_done and result.good == count
    assert result.cards == count + 1 and result.remakes == 1
    outcome = _outcome(sqlite_db, batch_id)
    assert len(outcome) == count

    serial, reader_name = pulled[0]
    with sqlite_db.reader() as s:
        att = s.scalars(select(Attempt).where(Attempt.chip_serial == serial)).one()
        assert att.outcome is AttemptOutcome.REJECTED
        entry = s.scalars(select(RejectBinEntry).where(RejectBinEntry.attempt_id == att.id)).one()
        remake = s.scalars(select(Attempt).where(Attempt.remake_of_id == att.id)).one()
        assert remake.outcome is AttemptOutcome.GOOD and remake.chip_serial != serial
    assert entry.station == "perso", (entry.station, entry.reason)
    assert reader_name in entry.reason, entry.reason
    assert "no card" in entry.reason or "pulled" in entry.reason, entry.reason


def test_a_slot_answered_by_another_connection_is_refused(tmp_path: Path) -> None:
    """vpcd accepts a card from whoever connects to its port first: a command that did
    not reach the card this feeder served is refused (keys loaded in clear at
    initialization would otherwise go to that other party)."""
    from cardperso.readers import cos

    feeder = PcscFeeder(take_slots(1), stock_seed(PRODUCT))
    try:
        serial = "00112233AABBCCDD"
        reader = feeder.insert(serial, "M01")
        reader.reset()
        assert reader.transmit(cos.get_data(0xDF01))[-2:] == b"\x90\x00"

        class Impostor:  # a slot whose served card never sees the commands
            occupied = True
            apdus = 0

        reader._slot = Impostor()  # type: ignore[attr-defined]
        with pytest.raises(ReaderError, match="not the card served"):
            reader.transmit(cos.get_data(0xDF01))
        Impostor.occupied = False  # our card's connection is gone: nothing is sent
        with pytest.raises(ReaderError, match="has left"):
            reader.transmit(cos.get_data(0xDF01))
        reader.close()
    finally:
        feeder.close()
