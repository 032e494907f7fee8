"""The Reader protocol over the simulated card: reset/ATR, PPS, T=0 GET RESPONSE
through exchange(), modeled elapsed time, a mute card as a ReaderError."""

from __future__ import annotations

import pytest

from cardperso.card import new_card
from cardperso.errors import ReaderError
from cardperso.readers import Reader, VirtualReader, cos, exchange
from cardperso.readers.virtual import virtual_reader, virtual_readers


def _tree(reader: Reader) -> None:
    for apdu in [
        cos.create_file(cos.fcp_df(0x3F00)),
        cos.create_file(cos.fcp_transparent(0x0101, 600, sfi=1)),
        cos.update_binary(bytes(range(200)) * 3, sfi=0),
        cos.put_key(1, cos.ALG_AES128, cos.USE_INT_AUTH, bytes(16)),
    ]:
        assert reader.transmit(apdu)[-2:] == b"\x90\x00"


def test_is_a_reader_and_answers_with_atr() -> None:
    reader = virtual_reader(1)
    assert isinstance(reader, Reader)
    atr = reader.reset()
    assert atr[0] == 0x3B and b"CPOS0100" in atr
    tck = 0
    for b in atr[1:]:
        tck ^= b
    assert tck == 0  # ISO/IEC 7816-3 §8.2.5: TCK makes the XOR of T0..TCK zero


def test_t0_case4_needs_get_response_and_exchange_collects_it() -> None:
    reader = virtual_reader(2, protocol=0)
    reader.reset()
    _tree(reader)
    raw = reader.transmit(cos.internal_authenticate(1, bytes(16)))
    assert raw == b"\x61\x10"  # data waits for GET RESPONSE under T=0
    resp = exchange(reader, cos.internal_authenticate(1, bytes(16)))
    assert resp.sw == 0x9000 and len(resp.data) == 16


def test_long_response_is_chunked_with_61xx() -> None:
    reader = virtual_reader(3)
    reader.reset()
    _tree(reader)
    raw = reader.transmit(cos.read_binary(0, 256))
    assert raw[-2:] == b"\x90\x00" and len(raw) == 258
    ext = exchange(reader, bytes.fromhex("00B00000000258"))  # extended Le = 600
    assert ext.sw == 0x9000 and ext.data == bytes(range(200)) * 3


def test_pps_speeds_up_modeled_time_but_not_the_answers() -> None:
    slow, fast = virtual_reader(4, serial=b"S" * 8), virtual_reader(4, serial=b"S" * 8, ta1=0x96)
    for r in (slow, fast):
        r.reset()
    t_slow0, t_fast0 = slow.elapsed, fast.elapsed
    for r in (slow, fast):
        _tree(r)
    assert slow.baud == pytest.approx(9600)
    assert fast.baud == pytest.approx(223_200)
    a = slow.transmit(cos.read_binary(0, 200))
    b = fast.transmit(cos.read_binary(0, 200))
    assert a == b
    assert (fast.elapsed - t_fast0) < (slow.elapsed - t_slow0)


def test_refused_pps_is_a_reader_error() -> None:
    reader = VirtualReader(new_card(seed=5), ta1=0x97)  # Di = 64 is above the card's TA1
    with pytest.raises(ReaderError):
        reader.reset()


def test_unpowered_or_torn_card_is_a_reader_error() -> None:
    reader = virtual_reader(6)
    with pytest.raises(ReaderError):
        reader.transmit(cos.select_mf())
    reader.reset()
    reader.card.eeprom.arm_power_loss(0)
    with pytest.raises(ReaderError):
        reader.transmit(cos.create_file(cos.fcp_df(0x3F00)))
    reader.card.eeprom.arm_power_loss(None)
    reader.reset()
    assert reader.transmit(cos.select_mf())[-2:] == b"\x6a\x82"  # the MF never appeared
    reader.close()
    with pytest.raises(ReaderError):
        reader.transmit(cos.select_mf())


def test_slots_hold_cards_with_distinct_serials() -> None:
    readers = virtual_readers("stock-A", 4)
    serials = set()
    for r in readers:
        r.reset()
        serials.add(exchange(r, cos.get_data(0xDF01)).data)
    assert len(serials) == 4
