"""The initialization room, then personalization weeks later on its stock.

* an init operator turns blank stock into pre-initialized stock of one product
  (by memory image or logically), with an initialization-role HSM session only;
  the simulated cards are kept in the card vault;
* a later ``batch run`` on pre-initialized stock, with a new feeder over the same
  vault (as a later process would have), personalizes exactly those cards and
  never calls the HSM in the initialization role;
* the rooms are separate: the init operator can start no batch, the line's
  operators cannot initialize stock;
* stock that does not fit is refused (another profile version; records with data
  for the initialization phase); a killed run's claim is spoiled by the next run.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.hsm import SoftHsm
from cardperso.line.feeder import SimulatedFeeder, stock_serials
from cardperso.line.initroom import InitRoomConfig, initialize_stock
from cardperso.line.orchestrator import LineConfig, LineStopped
from cardperso.line.usecases import import_batch, receive_stock, run_batch
from cardperso.line.vault import CardVault
from cardperso.production import operators, stock
from cardperso.production.db import Database
from cardperso.production.invariants import consistency_problems
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    AuditLog,
    Batch,
    BatchState,
    Role,
    StockCard,
    StockKind,
    StockState,
)
from cardperso.production.operators import PermissionDenied, Principal
from cardperso.profiles.loader import load_builtin
from cardperso.profiles.schema import LoadingMethod
from production.support import FAST_SCRYPT, PASSWORD, Staff

from .kit import TODAY


def make_init_operator(db: Database, staff: Staff, name: str = "ines") -> Principal:
    with db.transaction() as s:
        op = operators.create_operator(
            s,
            name,
            PASSWORD,
            [Role.INIT_OPERATOR],
            by=staff.security_officer,
            when=db.now(),
            params=FAST_SCRYPT,
        )
        return Principal(op.id, op.name, op.role_set)


def book_blank(db: Database, staff: Staff, seed: str, count: int) -> list[str]:
    serials = stock_serials(seed, 0, count)
    receive_stock(db, serials, by=staff.operator, lot=f"LOT-{seed}")
    return serials


def import_records(db: Database, hsm: SoftHsm, staff: Staff, product: str, n: int, d: Path) -> int:
    path = d / f"issuer-{product}.csv"
    generate_issuer_file(product, path, n, 11, today=TODAY, batch_id=f"{product.upper()}-JIT")
    return import_batch(db, hsm, path, by=staff.supervisor, today=TODAY).batch_id


def hsm_records(keystore: Path) -> list[dict[str, object]]:
    path = keystore.with_name(keystore.name + ".audit.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_init_room_then_a_batch_on_its_stock_weeks_later(
    db: Database, hsm: SoftHsm, staff: Staff, keystore: Path, tmp_path: Path
) -> None:
    ines = make_init_operator(db, staff)
    seed = "initroom-debit"
    book_blank(db, staff, seed, 16)
    vault = tmp_path / "run" / "card-vault"
    room_feeder = SimulatedFeeder(seed, vault=CardVault(vault))
    room = initialize_stock(
        db,
        hsm,
        load_builtin("debit"),
        12,
        by=ines,
        feeder=room_feeder,
        shelf=room_feeder,
        config=InitRoomConfig(seed="room", method=LoadingMethod.IMAGE),
    )
    assert room.method == "image" and room.image_source == "vendor"
    assert len(room.initialized) == 12 and not room.spoiled and room.stopped is None
    assert 0 < room.mean_chip_s < 2
    assert CardVault(vault).serials() == sorted(room.initialized)
    with db.reader() as s:
        assert stock.available(s, StockKind.PRE_INITIALIZED, "debit") == 12
        assert stock.available(s, StockKind.BLANK) == 4
        rows = s.scalars(select(StockCard).where(StockCard.kind == StockKind.PRE_INITIALIZED))
        assert {(r.product, r.profile_version) for r in rows} == {("debit", 1)}
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.seq))]
    assert actions.count("stock_initialized") == 12 and actions[-1] == "initialize_stock"
    kd_calls = [r for r in hsm_records(keystore) if r["operation"] == "kd_for_initialization"]
    assert len(kd_calls) == 12 * 2  # KD_PERSO and KD_ADMIN per card
    assert {(r["role"], r["operator"]) for r in kd_calls} == {("initialization", "init:R1/ines")}
    marker = len(hsm_records(keystore))

    # weeks later, another process: a new feeder over the same vault
    batch_id = import_records(db, hsm, staff, "debit", 10, tmp_path)
    result = run_batch(
        db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(seed, vault=CardVault(vault)),
        config=LineConfig(modules=2, seed="jit", stock_kind=StockKind.PRE_INITIALIZED),
    )
    assert result.batch_done and result.good == 10 and not result.rejected
    with db.reader() as s:
        assert consistency_problems(s, batch_id) == []
        batch = s.get(Batch, batch_id)
        assert batch is not None and batch.state is BatchState.DONE
        atts = s.scalars(select(Attempt).where(Attempt.batch_id == batch_id)).all()
        assert {a.outcome for a in atts} == {AttemptOutcome.GOOD}
        assert {a.chip_serial for a in atts} <= set(room.initialized)
        for a in atts:
            chip = next(e for e in a.station_results if e["station"] == "chip_module")
            assert set(chip["detail"]["stations"]) == {"feeder", "perso", "chip_check"}
        assert stock.available(s, StockKind.PRE_INITIALIZED, "debit") == 2
    roles = {r["role"] for r in hsm_records(keystore)[marker:]}
    assert "initialization" not in roles and "personalization" in roles


def test_golden_card_route_and_logical_route(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    db = sqlite_db
    staff = Staff(db)
    ines = make_init_operator(db, staff)
    seed = "initroom-employee"
    serials = book_blank(db, staff, seed, 8)
    feeder = SimulatedFeeder(seed, vault=CardVault(tmp_path / "vault"))
    golden = initialize_stock(
        db,
        hsm,
        load_builtin("employee"),
        3,
        by=ines,
        feeder=feeder,
        shelf=feeder,
        config=InitRoomConfig(method=LoadingMethod.IMAGE, image_source="golden"),
    )
    assert golden.golden == serials[0] and golden.initialized == serials[1:4]
    logical = initialize_stock(
        db,
        hsm,
        load_builtin("employee"),
        2,
        by=ines,
        feeder=feeder,
        shelf=feeder,
        config=InitRoomConfig(method=LoadingMethod.LOGICAL),
    )
    assert logical.method == "logical" and logical.initialized == serials[4:6]
    # both routes leave the same structure: the image ranges differ only by KD
    vault = CardVault(tmp_path / "vault")
    a, b = vault.load(serials[1]), vault.load(serials[4])
    assert a is not None and b is not None and len(a) == len(b) == 32 * 1024
    with db.reader() as s:
        g = s.scalars(select(StockCard).where(StockCard.serial == serials[0])).one()
        assert g.state is StockState.SPOILED
    batch_id = import_records(db, hsm, staff, "employee", 4, tmp_path)
    result = run_batch(
        db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(seed, vault=vault),
        config=LineConfig(modules=1, seed="jit", stock_kind=StockKind.PRE_INITIALIZED),
    )
    assert result.batch_done and result.good == 4


def test_vault_files_are_owner_only(tmp_path: Path) -> None:
    vault = CardVault(tmp_path / "v")
    path = vault.store("0102030405060708", b"\x00" * 64)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert vault.holds("0102030405060708") and not vault.holds("0102030405060709")
    with pytest.raises(ValueError):
        vault.load("../etc/passwd")


def test_the_rooms_are_separate(sqlite_db: Database, hsm: SoftHsm, tmp_path: Path) -> None:
    db = sqlite_db
    staff = Staff(db)
    ines = make_init_operator(db, staff)
    seed = "initroom-roles"
    book_blank(db, staff, seed, 4)
    feeder = SimulatedFeeder(seed)
    for who in (staff.operator, staff.supervisor, staff.security_officer):
        with pytest.raises(PermissionDenied, match="may not initialize stock"):
            initialize_stock(db, hsm, load_builtin("debit"), 1, by=who, feeder=feeder)
    batch_id = import_records(db, hsm, staff, "debit", 1, tmp_path)
    with pytest.raises(PermissionDenied, match="may not start batch"):
        run_batch(db, hsm, batch_id, by=ines, feeder=feeder)
    with db.reader() as s:
        denied = s.scalars(select(AuditLog).where(AuditLog.result == "denied")).all()
        assert {(d.actor, d.action) for d in denied} >= {
            ("olga", "initialize_stock"),
            ("ines", "start_batch"),
        }
    assert not operators.may(ines, operators.Action.IMPORT_BATCH)
    assert not operators.may(ines, operators.Action.RECEIVE_STOCK)


def test_records_with_initialization_data_need_blank_stock(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    db = sqlite_db
    staff = Staff(db)
    ines = make_init_operator(db, staff)
    seed = "initroom-sim"
    book_blank(db, staff, seed, 2)
    feeder = SimulatedFeeder(seed, vault=CardVault(tmp_path / "vault"))
    initialize_stock(db, hsm, load_builtin("sim"), 2, by=ines, feeder=feeder, shelf=feeder)
    batch_id = import_records(db, hsm, staff, "sim", 1, tmp_path)
    with pytest.raises(LineStopped, match="need blank stock"):
        run_batch(
            db,
            hsm,
            batch_id,
            by=staff.operator,
            feeder=feeder,
            config=LineConfig(modules=1, stock_kind=StockKind.PRE_INITIALIZED),
        )
    with db.reader() as s:
        assert stock.available(s, StockKind.PRE_INITIALIZED, "sim") == 2  # none spoiled


def test_stock_of_another_profile_version_is_refused(sqlite_db: Database) -> None:
    db = sqlite_db
    staff = Staff(db)
    ines = make_init_operator(db, staff)
    book_blank(db, staff, "versions", 2)
    with db.transaction() as s:
        card = stock.claim_blank_for_init(s, by=ines, station="R1", when=db.now())
        assert card is not None
        stock.book_initialized(
            s, card.id, by=ines, station="R1", product="debit", profile_version=1, when=db.now()
        )
    with db.reader() as s:
        stock.check_initialized_stock(s, "debit", 1)
        with pytest.raises(stock.StockMismatch, match="version 1; this batch is version 2"):
            stock.check_initialized_stock(s, "debit", 2)
        stock.check_initialized_stock(s, "sim", 2)


def test_a_killed_runs_claim_is_spoiled_by_the_next_run(sqlite_db: Database, hsm: SoftHsm) -> None:
    db = sqlite_db
    staff = Staff(db)
    ines = make_init_operator(db, staff)
    serials = book_blank(db, staff, "killed", 3)
    with db.transaction() as s:  # a run that died with this card in the station
        assert stock.claim_blank_for_init(s, by=ines, station="R1", when=db.now()) is not None
    with db.transaction() as s:  # another station's claim is not touched
        assert stock.claim_blank_for_init(s, by=ines, station="R2", when=db.now()) is not None
    feeder = SimulatedFeeder("killed")
    r = initialize_stock(db, hsm, load_builtin("debit"), 5, by=ines, feeder=feeder)
    assert r.recovered == 1 and r.initialized == [serials[2]]
    assert r.stopped == "no blank stock card available"
    with db.reader() as s:
        states = {c.serial: c.state for c in s.scalars(select(StockCard))}
    assert states == {
        serials[0]: StockState.SPOILED,
        serials[1]: StockState.CLAIMED,
        serials[2]: StockState.AVAILABLE,
    }
