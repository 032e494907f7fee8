"""Tap tests: every APDU of a personalization, searched for the secrets it carried.

An employee card is loaded under keys agreed by ECDH (the chapter's Figure 10.64,
docs/card-os.md §8.3) and a debit card under KD (Figure 10.63), both by the line's
StepRunner (:mod:`line_station`), with a tap on the reader recording every command
and answer. The test then knows every clear value the load carried - each PIN and
key the card now holds (read from the simulated card's memory), the private keys
of its EC key pairs, the keys of the session that was open at the end, and the clear
data field and expected answer of every protected command - and none of them may
appear in the trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
from line_station import LineStation
from prep_kit import Keystore, make_keystore

from cardperso.apdu import parse_command
from cardperso.card.objects import read_value
from cardperso.card.store import ObjType
from cardperso.dataprep.generator import generate_records
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard, StepKind
from cardperso.hsm import Hsm, Role
from cardperso.profiles.loader import load_builtin
from cardperso.readers import cos, exchange
from cardperso.readers.virtual import VirtualReader, virtual_reader
from cardperso.securemsg import SmChannel
from readers.tap import Tap

TODAY = date(2026, 3, 15)
SHORTEST = 8  # shorter values could match by chance somewhere in a few kilobytes


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def hsm(keystore: Keystore) -> Iterator[Hsm]:
    h = keystore.open()
    yield h
    h.close()


def _load(
    hsm: Hsm, product: str, seq: int
) -> tuple[PreparedCard, VirtualReader, list[bytes], list[bytes]]:
    """Prepare one record, initialize a card, personalize it through a tap: (card,
    reader, the initialization trace, the personalization trace)."""
    profile = load_builtin(product)
    record = next(generate_records(profile, 1, seq, TODAY))
    dp = hsm.session(Role.DATAPREP, "dataprep")
    preparer = CardPreparer(profile, dp, batch_id=f"TAP-{product}")
    cards, problems = preparer.prepare([(seq, seq + 1, record)])
    assert not problems
    card = PreparedCard.from_line(cards[0].to_line())
    reader = virtual_reader(seq, serial=bytes.fromhex(f"7A90000000{seq:06X}"))
    station = LineStation(hsm)
    tap = Tap(reader)
    station.initialize(tap, preparer.init_script, card)  # the other room: KD in clear
    station.trace.clear()
    station.personalize(reader, card)
    return card, reader, tap.trace, list(station.trace)


def _secrets(card: PreparedCard, reader: VirtualReader) -> dict[str, bytes]:
    """Every clear value the load carried, by name."""
    chip = reader.card
    out: dict[str, bytes] = {}
    for _, e in chip.st.iter_entries():
        if e.type is ObjType.PIN:
            out[f"PIN {e.fid} block"] = read_value(chip, e)
        elif e.type is ObjType.KEY:
            out[f"key {e.fid}"] = read_value(chip, e)
        elif e.type is ObjType.ECKEY:
            out[f"EC key {e.fid} private"] = read_value(chip, e)[:32]
    sm = chip.ram.sm
    assert isinstance(sm, SmChannel)
    out["SK.ENC"], out["SK.MAC"] = sm.k_enc, sm.k_mac
    for i, step in enumerate(card.script):
        if step.kind is StepKind.APDU and step.sm:
            data = parse_command(step.apdu).data
            if len(data) >= SHORTEST and not data.startswith(b"\x81\x01"):
                out[f"step {i} data ({step.note})"] = data
            if step.expect_data is not None and len(step.expect_data) >= SHORTEST:
                out[f"step {i} answer ({step.note})"] = step.expect_data
    return out


def _leaks(trace: list[bytes], secrets: dict[str, bytes]) -> list[str]:
    blob = b"\x00".join(trace)
    return [name for name, value in secrets.items() if value in blob]


def test_ecdh_protected_employee_load_shows_nothing_in_clear(hsm: Hsm, keystore: Keystore) -> None:
    card, reader, _, trace = _load(hsm, "employee", 1)
    secrets = _secrets(card, reader)
    # the PUK, KD_ADMIN, both EC private keys, the ECDH session, the holder data and photo
    assert {"PIN 2 block", "key 1", "EC key 2 private", "EC key 3 private"} <= set(secrets)
    assert sum(name.startswith("step ") for name in secrets) >= 4
    assert _leaks(trace, secrets) == []
    # The session open at the end is the one agreed with KEY_LOAD (ref 3).
    assert reader.card.ram.sm is not None and reader.card.ram.sm.key_ref == 3
    # Every prepared secret was opened by the HSM into the ECDH-keyed channel only.
    audit = keystore.path.with_name(keystore.path.name + ".audit.jsonl")
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    (opened,) = [r for r in records if r["operation"] == "card_sm_open_ecdh"]
    assert opened["result"] == "ok"
    secret_wraps = [
        r for r in records if r["operation"] == "card_sm_wrap" and "card_secret" in r["detail"]
    ]
    assert secret_wraps
    assert {r["detail"]["channel"] for r in secret_wraps} == {opened["detail"]["ecdh_channel"]}
    # The card works: the transport PIN changes, the PUK went to the issuer, KD_ADMIN
    # authenticates (QC, from KM).
    change = cos.change_reference_data(1, cos.format2("000000"), cos.format2("246802"))
    assert exchange(reader, change).sw == 0x9000
    assert exchange(reader, cos.verify(1, cos.format2("246802"))).sw == 0x9000
    qc = hsm.session(Role.QC, "qc")
    challenge = exchange(reader, cos.get_challenge(16)).data
    serial = bytes.fromhex("7A90000000000001")
    cg = qc.external_auth_cryptogram(qc.get_key("KM.EMPLOYEE.ADMIN"), serial, challenge)
    assert exchange(reader, cos.external_authenticate(1, cg)).sw == 0x9000


def test_kd_protected_debit_load_shows_nothing_in_clear(hsm: Hsm) -> None:
    card, reader, _, trace = _load(hsm, "debit", 2)
    assert not any(s.kind is StepKind.OPEN_ECDH for s in card.script)
    secrets = _secrets(card, reader)
    assert {"PIN 1 block", "key 1", "key 2", "key 3"} <= set(secrets)
    assert _leaks(trace, secrets) == []


def test_the_search_finds_what_does_travel_in_clear(hsm: Hsm) -> None:
    """The search itself works: initialization, the other room, loads KD and the
    transport PIN in clear (the chapter's Figure 10.63), and the tap sees both."""
    card, reader, init, _ = _load(hsm, "employee", 3)
    assert set(_leaks(init, _secrets(card, reader))) == {"key 1", "PIN 1 block"}
