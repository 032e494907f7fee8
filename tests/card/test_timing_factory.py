"""The timing model's arithmetic (ISO/IEC 7816-3 character timing) and the
card-stock factory (unique serials, determinism)."""

from __future__ import annotations

import pytest

from cardperso.card import CardStock, new_card
from cardperso.card.check import check_card
from cardperso.card.timing import TimingModel, TimingParams
from cardperso.readers import VirtualReader, cos


def test_etu_at_default_rate_is_one_9600th_second() -> None:
    m = TimingModel()
    assert m.etu_s == pytest.approx(1 / 9600)
    assert m.baud == pytest.approx(9600)


def test_t1_io_time_formula() -> None:
    m = TimingModel()
    m.protocol = 1
    # 10-byte command and 2-byte response: (10 + 4) + (2 + 4) chars of 12 etu (CGT with
    # N = 0, since the ATR has no TC1), two block guard times
    expect = ((14 + 6) * 12 + 2 * 22) / 9600
    assert m.io_seconds(10, 2) == pytest.approx(expect)


def test_t0_io_time_formula() -> None:
    m = TimingModel()
    m.protocol = 0
    # header 5 + 3 data = 8 chars, procedure byte, SW 2; 12 etu each; two turnarounds
    expect = ((8 + 1 + 2) * 12 + 2 * 16) / 9600
    assert m.io_seconds(8, 2) == pytest.approx(expect)


def test_eeprom_pages_are_charged() -> None:
    card = new_card(seed=1)
    reader = VirtualReader(card)
    reader.reset()
    t0 = reader.elapsed
    reader.transmit(cos.create_file(cos.fcp_df(0x3F00)))
    with_write = reader.elapsed - t0
    t1 = reader.elapsed
    reader.transmit(cos.select_mf())
    without = reader.elapsed - t1
    assert with_write - without > TimingParams().eeprom_page_write_s


def test_stock_serials_are_unique_and_deterministic() -> None:
    a = [c.chip_serial for c in CardStock("s1").take(500)]
    b = [c.chip_serial for c in CardStock("s1").take(500)]
    c = [c.chip_serial for c in CardStock("s2").take(5)]
    assert len(set(a)) == 500 and a == b and not set(a) & set(c)


def test_blank_card_is_consistent_and_manufactured() -> None:
    card = new_card(bytes.fromhex("1122334455667788"), seed=9)
    reader = VirtualReader(card)
    reader.reset()
    assert check_card(card) == []
    assert reader.transmit(cos.get_data(0xDF02)) == bytes.fromhex("DF0201019000")
    assert reader.transmit(cos.get_data(0xDF01)) == bytes.fromhex("DF01081122334455667788") + (
        b"\x90\x00"
    )


def test_seeded_cards_are_byte_identical() -> None:
    def run() -> bytes:
        card = new_card(bytes(8), seed=42)
        r = VirtualReader(card)
        r.reset()
        r.transmit(cos.create_file(cos.fcp_df(0x3F00)))
        r.transmit(cos.generate_key_pair(1))
        return bytes(card.eeprom.data) + r.transmit(cos.get_challenge(16))

    assert run() == run()
