"""Initialization and personalization are separate rooms, inside the HSM and on the line.

The chapter (Figure 10.63): whoever initializes a card learns KD and must not be
able to use it on personalization data; whoever personalizes never sees KD. The
HSM's roles enforce it per call; the line uses one session per role, and its audit
log shows which room made each call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardperso.hsm import PermissionDeniedError, Role, SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.fieldkeys import field_cipher
from production.support import Staff

from .kit import import_product, stock_seed

# What the initialization room may do at all: KD into the card, card authentication.
INIT_OPERATIONS = {
    "list_keys",
    "kd_for_initialization",
    "card_cryptogram",
    "verify_card_cryptogram",
    "external_auth_cryptogram",
}
# Calls that see or re-encrypt issuer data, or derive the record keys.
ISSUER_DATA = {
    "decrypt_data",
    "translate_to_card",
    "translate_pin_block",
    "card_secrets",
    "card_sm_wrap",
    "card_sm_unwrap",
    "card_sm_unwrap_pin",
    "generate_mac",
}


def test_the_initialization_role_cannot_open_issuer_data(hsm: SoftHsm) -> None:
    init = hsm.session(Role.INITIALIZATION, "init room")
    perso = hsm.session(Role.PERSONALIZATION, "perso room")
    card_secret = perso.get_key("CARD.SECRET")
    # The records in the database open only with keys derived by a MAC in the HSM.
    with pytest.raises(PermissionDeniedError):
        field_cipher(init)
    with pytest.raises(PermissionDeniedError):
        init.decrypt_data(card_secret, bytes(16), bytes(16))
    with pytest.raises(PermissionDeniedError):
        init.card_secrets(card_secret, [])


def test_the_personalization_role_cannot_obtain_kd(hsm: SoftHsm) -> None:
    perso = hsm.session(Role.PERSONALIZATION, "perso room")
    km = perso.get_key("KM.DEBIT.PERSO")
    with pytest.raises(PermissionDeniedError):
        perso.kd_for_initialization(km, bytes(8))


def test_a_line_run_uses_each_room_only_for_its_own_calls(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    batch_id = import_product(sqlite_db, hsm, staff, "debit", 6, tmp_path)
    result = run_batch(
        sqlite_db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(stock_seed("debit")),
        config=LineConfig(modules=2, seed="rooms"),
    )
    assert result.good == 6
    by_role: dict[str, set[str]] = {}
    for line in hsm.audit_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        by_role.setdefault(rec["role"], set()).add(rec["operation"])
    assert "kd_for_initialization" in by_role["initialization"]
    assert by_role["initialization"] <= INIT_OPERATIONS
    assert not by_role["initialization"] & ISSUER_DATA
    for role, operations in by_role.items():
        if role != "initialization":
            assert "kd_for_initialization" not in operations, role
    assert {"card_sm_wrap", "card_sm_unwrap"} <= by_role["personalization"]
