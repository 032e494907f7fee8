"""Edge cases found in review: large depersonalization, other page sizes, uniform
secret comparisons, and the lock invariant across a power cut."""

from __future__ import annotations

import contextlib

from cardperso.card import new_card
from cardperso.card.check import check_card
from cardperso.card.layout import Layout
from cardperso.errors import ReaderError
from cardperso.readers import VirtualReader, cos, exchange

ADMIN = bytes(range(16))


def ok(r: VirtualReader, apdu: bytes) -> bytes:
    resp = exchange(r, apdu)
    assert resp.sw == 0x9000, f"{apdu[:4].hex()}: {resp.sw:04X}"
    return resp.data


def _initialized(layout: Layout | None = None) -> VirtualReader:
    r = VirtualReader(new_card(bytes(8), seed=5, layout=layout))
    r.reset()
    ok(r, cos.create_file(cos.fcp_df(0x3F00)))
    ok(r, cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_ADMIN, ADMIN))
    ok(r, cos.put_pin(1, cos.format2("1234")))
    ok(r, cos.set_lifecycle(cos.INITIALIZED))
    return r


def _admin(r: VirtualReader) -> None:
    from cardperso.crypto.ciphers import AES

    rc = ok(r, cos.get_challenge(16))
    ok(r, cos.external_authenticate(1, AES(ADMIN).encrypt_ecb(rc)))


def test_depersonalizing_a_large_personalized_subtree() -> None:
    r = _initialized(Layout(dir_entries=80))
    ok(r, cos.create_file(cos.fcp_df(0x7000)))
    for i in range(61):
        ok(r, cos.select_path(0x7000))
        ok(r, cos.create_file(cos.fcp_transparent(0x7100 + i, 8)))
    free_before = ok(r, cos.get_data(0xDF04))
    _admin(r)
    ok(r, cos.depersonalize())
    assert check_card(r.card) == []
    assert ok(r, cos.get_data(0xDF02)) == bytes.fromhex("DF020107")
    assert ok(r, cos.get_data(0xDF04)) > free_before
    assert exchange(r, cos.select_path(0x7000)).sw == 0x6A82


def test_cut_during_depersonalization_resumes_at_power_up() -> None:
    for cut in (3, 17, 40):
        r = _initialized()
        ok(r, cos.create_file(cos.fcp_df(0x7000)))
        for i in range(6):
            ok(r, cos.select_path(0x7000))
            ok(r, cos.create_file(cos.fcp_transparent(0x7100 + i, 40)))
        _admin(r)
        r.card.eeprom.arm_power_loss(cut)
        with contextlib.suppress(ReaderError):
            r.transmit(cos.depersonalize())
        r.card.eeprom.arm_power_loss(None)
        r.reset()
        assert check_card(r.card) == []
        assert ok(r, cos.get_data(0xDF02)) == bytes.fromhex("DF020107")
        assert exchange(r, cos.select_path(0x7000)).sw == 0x6A82


def test_a_card_with_128_byte_pages_boots_and_works() -> None:
    r = _initialized(Layout(eeprom_size=64 * 1024, page_size=128))
    assert check_card(r.card) == []
    ok(r, cos.verify(1, cos.format2("1234")))


def test_right_and_wrong_pin_cost_the_same_page_writes() -> None:
    counts = []
    for guess in ("1234", "9999"):
        r = _initialized()
        before = r.card.eeprom.page_writes
        r.transmit(cos.change_reference_data(1, cos.format2(guess), cos.format2("5678")))
        counts.append(r.card.eeprom.page_writes - before)
    assert counts[0] == counts[1]


def test_lock_is_never_missing_after_leaving_manufactured() -> None:
    """Cut the power at every page write of SET LIFECYCLE INITIALIZED: the card is
    either still MANUFACTURED and unlocked, or INITIALIZED and locked."""
    probe = VirtualReader(new_card(bytes(8), seed=6))
    probe.reset()
    ok(probe, cos.create_file(cos.fcp_df(0x3F00)))
    before = probe.card.eeprom.page_writes
    ok(probe, cos.set_lifecycle(cos.INITIALIZED))
    writes = probe.card.eeprom.page_writes - before
    for cut in range(writes):
        r = VirtualReader(new_card(bytes(8), seed=6))
        r.reset()
        ok(r, cos.create_file(cos.fcp_df(0x3F00)))
        r.card.eeprom.arm_power_loss(cut)
        with contextlib.suppress(ReaderError):
            r.transmit(cos.set_lifecycle(cos.INITIALIZED))
        r.card.eeprom.arm_power_loss(None)
        r.reset()
        state = ok(r, cos.get_data(0xDF02))[-1]
        locked = ok(r, cos.get_data(0xDF06))[-1]
        assert (state, locked) in ((0x01, 0x00), (0x07, 0x01)), cut
