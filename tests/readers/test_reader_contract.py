"""One Reader contract, run on every implementation present: the simulated card in
process (``VirtualReader``) and the same card behind pcscd (``PcscReader`` over a vpcd
slot of a private pcscd; skipped without pcscd/vpcd, failing when
``CARDPERSO_REQUIRE_ALL=1``).

Covered: the ATR at reset (ISO/IEC 7816-3 §8) and that reset is a cold reset; the
four APDU cases (7816-4 §5.1) under T=1 and T=0 (vpcd passes T=0 through: the
simulated card answers a case-4 command with 61xx as a T=0 card does, 7816-3 §10.3.5);
61xx and 6Cxx handled by ``exchange``; extended-length APDUs under T=1; elapsed time
that grows with work; a ReaderError naming the reader for a card not powered, closed,
or pulled out mid-command.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardperso.errors import ReaderError
from cardperso.readers import Reader, cos, exchange

from .contract import Kit, PcscKit, VirtualKit, tree
from .pcsc_rig import take_slots


@pytest.fixture(scope="session")
def pcsc_kit() -> Iterator[PcscKit]:
    kit = PcscKit(take_slots(2))
    yield kit
    kit.close()


@pytest.fixture(params=["virtual", pytest.param("pcsc", marks=pytest.mark.realcomponent)])
def kit(request: pytest.FixtureRequest) -> Kit:
    if request.param == "virtual":
        return VirtualKit()
    pcsc: PcscKit = request.getfixturevalue("pcsc_kit")
    return pcsc


def _powered(kit: Kit, protocol: int = 1) -> Reader:
    reader = kit.fresh(protocol)
    reader.reset()
    return reader


def test_is_a_reader_and_answers_reset_with_the_cards_atr(kit: Kit) -> None:
    reader = kit.fresh(1)
    assert isinstance(reader, Reader) and reader.name
    atr = reader.reset()
    assert atr[0] == 0x3B and b"CPOS0100" in atr
    tck = 0
    for b in atr[1:]:
        tck ^= b
    assert tck == 0  # ISO/IEC 7816-3 §8.2.5
    assert reader.reset() == atr


def test_reset_is_a_cold_reset(kit: Kit) -> None:
    reader = _powered(kit)
    tree(reader)
    assert reader.transmit(cos.select_fid(0x0101)) == b"\x90\x00"
    assert reader.transmit(cos.read_binary(0, 4)) == bytes([0, 1, 2, 3, 0x90, 0x00])
    reader.reset()  # RAM cleared: no current EF any more, the file itself stays
    assert reader.transmit(cos.read_binary(0, 4)) == b"\x69\x86"
    assert reader.transmit(cos.read_binary(0, 4, sfi=1)) == bytes([0, 1, 2, 3, 0x90, 0x00])


@pytest.mark.parametrize("protocol", [1, 0])
def test_the_four_apdu_cases(kit: Kit, protocol: int) -> None:
    reader = _powered(kit, protocol)
    tree(reader, big=protocol == 1)
    assert reader.transmit(cos.select_mf()) == b"\x90\x00"  # case 1
    assert reader.transmit(cos.read_binary(0, 8, sfi=1)) == bytes(range(8)) + b"\x90\x00"  # 2
    assert reader.transmit(cos.update_binary(b"\xaa\xbb", offset=2, sfi=1)) == b"\x90\x00"  # 3
    assert reader.transmit(cos.read_binary(0, 4, sfi=1)) == b"\x00\x01\xaa\xbb\x90\x00"
    raw = reader.transmit(cos.internal_authenticate(1, bytes(16)))  # case 4
    if protocol == 0:
        assert raw == b"\x61\x10"  # T=0: the data wait for GET RESPONSE
    else:
        assert len(raw) == 18 and raw[-2:] == b"\x90\x00"
    full = exchange(reader, cos.internal_authenticate(1, bytes(16)))
    assert full.sw == 0x9000 and len(full.data) == 16
    if protocol == 1:
        assert full.data == raw[:-2]


@pytest.mark.parametrize("protocol", [1, 0])
def test_61xx_and_6cxx_through_exchange(kit: Kit, protocol: int) -> None:
    reader = _powered(kit, protocol)
    tree(reader, big=False)
    serial = exchange(reader, cos.get_data(0xDF01))
    assert serial.sw == 0x9000 and len(serial.data) == 11
    short = reader.transmit(bytes.fromhex("00CADF0102"))  # Le = 2 of 11 bytes
    assert short == serial.data[:2] + b"\x61\x09"
    assert exchange(reader, bytes.fromhex("00CADF0102")).data == serial.data
    assert reader.transmit(cos.read_record(1, sfi=2, le=5)) == b"\x6c\x14"  # record: 20
    again = exchange(reader, cos.read_record(1, sfi=2, le=5))
    assert again.sw == 0x9000 and again.data == bytes(range(20, 40))


def test_extended_length_apdus_under_t1(kit: Kit) -> None:
    reader = _powered(kit, 1)
    tree(reader, big=True)  # UPDATE BINARY of 600 bytes: extended Lc
    raw = reader.transmit(bytes.fromhex("00B08100000258"))  # extended Le = 600
    assert raw == bytes(range(200)) * 3 + b"\x90\x00"


def test_elapsed_grows_with_work(kit: Kit) -> None:
    reader = kit.fresh(1)
    t0 = reader.elapsed
    reader.reset()
    t1 = reader.elapsed
    assert t1 > t0 >= 0.0
    tree(reader)
    t2 = reader.elapsed
    assert t2 > t1
    reader.transmit(cos.read_binary(0, 200, sfi=1))
    assert reader.elapsed > t2


def test_a_card_not_powered_is_a_reader_error(kit: Kit) -> None:
    reader = kit.fresh(1)
    with pytest.raises(ReaderError):
        reader.transmit(cos.select_mf())
    reader.reset()
    assert reader.transmit(cos.select_mf())[-2:] in (b"\x90\x00", b"\x6a\x82")
    reader.close()
    with pytest.raises(ReaderError):
        reader.transmit(cos.select_mf())
    reader.reset()  # close + reset is the line's power cycle
    assert exchange(reader, cos.get_data(0xDF01)).sw == 0x9000


def test_a_card_pulled_out_mid_session_is_a_reader_error_naming_the_reader(kit: Kit) -> None:
    reader = _powered(kit, 1)
    tree(reader)
    kit.pull(reader)
    with pytest.raises(ReaderError) as err:
        reader.transmit(cos.read_binary(0, 16, sfi=1))
    assert reader.name in str(err.value)
    with pytest.raises(ReaderError) as err:
        reader.close()
        reader.reset()
    assert reader.name in str(err.value)
