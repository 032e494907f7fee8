"""Golden cards and clones at the card's edge: the dump routine serves one session,
a card past MANUFACTURED can never be dumped, and a card kept as its EEPROM bytes
(the line's card vault) comes back as the same card."""

from __future__ import annotations

import pytest

from cardperso.card import dump_routine, new_card
from cardperso.card.factory import card_from_memory
from cardperso.card.vendor import Layout
from cardperso.readers import VirtualReader, cos, exchange
from cardperso.readers.virtual import stored_card_reader

SERIAL = bytes.fromhex("60D0C10E00000001")
STRUCTURE = [
    cos.create_file(cos.fcp_df(0x3F00)),
    cos.create_file(cos.fcp_transparent(0x2F01, 32, sfi=1)),
    cos.update_binary(b"same on every card", sfi=1),
]


def _blank() -> VirtualReader:
    r = VirtualReader(new_card(SERIAL, seed="clone"))
    r.reset()
    return r


def _ok(r: VirtualReader, apdu: bytes) -> bytes:
    resp = exchange(r, apdu)
    assert resp.sw == 0x9000, f"{resp.sw:04X}"
    return resp.data


def test_the_dump_routine_is_gone_after_one_reset() -> None:
    r = _blank()
    for apdu in STRUCTURE:
        _ok(r, apdu)
    _ok(r, cos.load_dump_routine(dump_routine()))
    assert len(_ok(r, cos.read_memory(0x09C0, 64))) == 64
    r.reset()
    assert r.transmit(cos.read_memory(0x09C0, 64)) == b"\x6d\x00"
    assert _ok(r, cos.get_data(0xDF02))[-1] == cos.MANUFACTURED  # still a golden card


@pytest.mark.parametrize("target", [cos.INITIALIZED, cos.PERSONALIZED])
def test_a_card_past_manufactured_cannot_be_dumped(target: int) -> None:
    r = _blank()
    for apdu in STRUCTURE:
        _ok(r, apdu)
    _ok(r, cos.set_lifecycle(cos.INITIALIZED))
    if target == cos.PERSONALIZED:
        _ok(r, cos.set_lifecycle(cos.PERSONALIZED))
    assert exchange(r, cos.load_dump_routine(dump_routine())).sw == 0x6986
    assert exchange(r, cos.read_memory(0x0000, 64)).sw == 0x6D00
    assert exchange(r, cos.write_memory(0x09C0, bytes(32))).sw == 0x6986
    assert exchange(r, cos.checksum_memory(0x09C0, 32)).sw == 0x6986


def test_a_card_kept_as_its_memory_comes_back_the_same() -> None:
    r = _blank()
    for apdu in STRUCTURE:
        _ok(r, apdu)
    _ok(r, cos.set_lifecycle(cos.INITIALIZED))
    r.close()
    again = stored_card_reader(r.memory(), "clone")
    again.reset()
    assert _ok(again, cos.get_data(0xDF01))[-8:] == SERIAL
    assert _ok(again, cos.get_data(0xDF02))[-1] == cos.INITIALIZED
    assert _ok(again, cos.get_data(0xDF06))[-1] == 1  # the lock stays blown
    assert _ok(again, cos.read_binary(0, 18, sfi=1)) == b"same on every card"
    assert again.memory() == r.memory()


def test_card_from_memory_reads_layout_and_os_from_the_manufacturer_page() -> None:
    lay = Layout(eeprom_size=16 * 1024, dir_entries=32)
    card = new_card(SERIAL, seed=1, layout=lay, os_version=b"CPOS0200")
    clone = card_from_memory(bytes(card.eeprom.data), seed=1)
    assert clone.eeprom.size == 16 * 1024 and clone.os_version == b"CPOS0200"
    assert clone.chip_serial == SERIAL
    with pytest.raises(ValueError, match="no valid manufacturer page"):
        card_from_memory(bytes(32 * 1024))
    with pytest.raises(ValueError, match="size differs"):
        card_from_memory(bytes(card.eeprom.data) + bytes(64))
