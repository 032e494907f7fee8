"""Tearing: cut the power after every possible EEPROM page write of an update and
check that, after power-up, the card's structures are consistent and every file,
counter and key object is wholly old or wholly new (issue: card OS, must-show)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cardperso.card import CardOS, new_card
from cardperso.card.check import check_card
from cardperso.card.store import Store
from cardperso.errors import ReaderError
from cardperso.readers import VirtualReader, cos

KD_OLD = bytes(range(16))
KD_NEW = bytes(range(100, 132))


def _ok(reader: VirtualReader, apdu: bytes) -> bytes:
    r = reader.transmit(apdu)
    assert r[-2:] == b"\x90\x00", f"{apdu.hex()} -> {r[-2:].hex()}"
    return r[:-2]


def build(initialized: bool) -> tuple[CardOS, VirtualReader]:
    """A deterministic card with a small tree, a key and a PIN."""
    card = new_card(bytes.fromhex("00000000000000AA"), seed=7)
    reader = VirtualReader(card)
    reader.reset()
    _ok(reader, cos.create_file(cos.fcp_df(0x3F00)))
    _ok(reader, cos.create_file(cos.fcp_df(0x5000, b"\xa0\x00\x00\x00\x01")))
    _ok(reader, cos.create_file(cos.fcp_transparent(0x5001, 400, sfi=1)))
    _ok(reader, cos.create_file(cos.fcp_linear(0x5002, 48, 4, sfi=2)))
    _ok(reader, cos.append_record(b"R1".ljust(48, b"-"), sfi=2))
    _ok(reader, cos.update_binary(b"\x11" * 400, sfi=1))
    _ok(reader, cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_SM, KD_OLD))
    _ok(reader, cos.put_pin(1, cos.format2("1234"), tries=3))
    if initialized:
        _ok(reader, cos.set_lifecycle(cos.INITIALIZED))
        _ok(reader, cos.select_path(0x5000))
    return card, reader


def snapshot(card: CardOS) -> tuple[object, ...]:
    """The logical content: system page, every object entry with its body, bitmap."""
    assert card.info is not None
    st = Store(card.eeprom, card.info.layout)
    st.reload()
    objects = tuple((i, e.pack(), card.eeprom.read(e.body, e.alloc)) for i, e in st.iter_entries())
    return (st.system, objects, bytes(st.bitmap))


@dataclass
class Scenario:
    name: str
    initialized: bool
    apdus: list[bytes]  # the last one is the torn update; earlier ones run first


SCENARIOS = [
    # 250 bytes at offset 40 spans five EEPROM pages: the journal path
    Scenario(
        "update binary",
        False,
        [cos.select_path(0x5000, 0x5001), cos.update_binary(b"\x22" * 250, offset=40)],
    ),
    Scenario(
        "update binary, personalization",
        True,
        [cos.select_path(0x5000, 0x5001), cos.update_binary(b"\x33" * 300, offset=90)],
    ),
    Scenario("append record", True, [cos.append_record(b"R2".ljust(48, b"+"), sfi=2)]),
    Scenario(
        "change PIN",
        True,
        [cos.change_reference_data(1, cos.format2("1234"), cos.format2("86420"))],
    ),
    Scenario("wrong PIN guess", True, [cos.verify(1, cos.format2("9999"))]),
    Scenario(
        "key load (replace)",
        False,
        [cos.put_key(1, cos.ALG_AES256, cos.USE_EXT_AUTH | cos.USE_SM, KD_NEW, version=2)],
    ),
    Scenario(
        "key load (new)", False, [cos.put_key(2, cos.ALG_TDES2, cos.USE_INT_AUTH, KD_NEW[:16])]
    ),
]


def _run(scn: Scenario, cut: int | None) -> tuple[CardOS, VirtualReader, bool]:
    card, reader = build(scn.initialized)
    for apdu in scn.apdus[:-1]:
        _ok(reader, apdu)
    card.eeprom.arm_power_loss(cut)
    torn = False
    try:
        reader.transmit(scn.apdus[-1])
    except ReaderError:
        torn = True
    card.eeprom.arm_power_loss(None)
    return card, reader, torn


def _old_and_new(scn: Scenario) -> tuple[object, object, int]:
    card, reader = build(scn.initialized)
    for apdu in scn.apdus[:-1]:
        _ok(reader, apdu)
    old = snapshot(card)
    before = card.eeprom.page_writes
    reader.transmit(scn.apdus[-1])
    writes = card.eeprom.page_writes - before
    return old, snapshot(card), writes


@pytest.mark.parametrize("scn", SCENARIOS, ids=lambda s: s.name)
def test_every_cut_point_leaves_old_or_new(scn: Scenario) -> None:
    old, new, writes = _old_and_new(scn)
    assert old != new and writes >= 1
    seen = {"old": 0, "new": 0}
    for cut in range(writes):
        card, reader, torn = _run(scn, cut)
        assert torn, f"cut {cut}: the command completed"
        reader.reset()  # power-up: journal recovery
        assert check_card(card) == [], f"cut {cut}"
        state = snapshot(card)
        assert state in (old, new), f"cut {cut}: a mixed state"
        seen["old" if state == old else "new"] += 1
    assert seen["old"] >= 1  # a cut before the commit point keeps the old state
    if writes > 2:
        assert seen["new"] >= 1  # a cut after it completes the update at power-up


@pytest.mark.parametrize("scn", SCENARIOS[:1] + SCENARIOS[3:4], ids=lambda s: s.name)
def test_cut_during_recovery_too(scn: Scenario) -> None:
    """A second power cut during the journal replay is survived as well."""
    old, new, writes = _old_and_new(scn)
    for cut in range(writes):
        probe, reader, _ = _run(scn, cut)
        before = probe.eeprom.page_writes
        reader.reset()
        replay = probe.eeprom.page_writes - before
        for second in range(replay):
            card, reader, _ = _run(scn, cut)
            card.eeprom.arm_power_loss(second)
            with pytest.raises(ReaderError):
                reader.reset()
            card.eeprom.arm_power_loss(None)
            reader.reset()
            assert check_card(card) == []
            assert snapshot(card) in (old, new)


def test_after_a_cut_the_card_still_works() -> None:
    scn = SCENARIOS[3]
    _, _, writes = _old_and_new(scn)
    _card, reader, _ = _run(scn, writes // 2)
    reader.reset()
    _ok(reader, cos.select_path(0x5000))
    r = reader.transmit(cos.verify(1, cos.format2("1234")))
    r2 = reader.transmit(cos.verify(1, cos.format2("86420")))
    assert {r[-2:], r2[-2:]} & {b"\x90\x00"}, "exactly one of old/new PIN must verify"


Check = Callable[[], None]
