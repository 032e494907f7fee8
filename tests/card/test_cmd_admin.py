"""Administrative commands, each with success and every status word it can return:
GET DATA, PUT KEY / PUT PIN, WRITE MEMORY, LOAD DUMP ROUTINE, READ MEMORY,
CHECKSUM MEMORY and DEPERSONALIZE's refusals (commands_admin.py docstrings; the
life-cycle transitions and the must-show flows are in ``test_lifecycle.py``).

Physical addresses follow the documented memory map (``card/layout.py``) of the
default layout - 32 KiB EEPROM, 64-byte pages, 32 journal pages, 4 dump pages, 64
directory entries, 16-byte heap blocks - worked out here by hand:

    0x0000 manufacturer   0x0040 fuse   0x0080 system   0x00C0 journal (2048 B)
    0x08C0 dump (256 B)   0x09C0 directory (2048 B)   0x11C0 bitmap (256 B)
    0x12C0 heap: 27,968 B = 1,748 blocks
"""

from __future__ import annotations

import hashlib

import pytest
from sm_host import (
    ADMIN,
    INITIALIZED,
    KD,
    MANUFACTURED,
    PERSONALIZED,
    TDES_AUTH,
    TDES_SM,
    build_reader,
    expect,
    external_auth,
    standard_card,
)

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.card import dump_routine
from cardperso.readers import VirtualReader, cos

f2 = cos.format2
SERIAL = bytes.fromhex("00000000000000C1")  # standard_card's chip serial

EEPROM_SIZE = 0x8000
MANUF, FUSE, SYSTEM, JOURNAL, DUMP, DIRECTORY, BITMAP, HEAP = (
    0x0000,
    0x0040,
    0x0080,
    0x00C0,
    0x08C0,
    0x09C0,
    0x11C0,
    0x12C0,
)
DUMP_SIZE = 256
BLANK_FREE = 27968


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()


def get_data_value(r: VirtualReader, tag: int) -> bytes:
    out = expect(r, cos.get_data(tag))
    d = tlv.to_dict(out)
    assert list(d) == [tag], out.hex()
    return d[tag]


# == GET DATA =========================================================================


def test_get_data_df01_chip_serial() -> None:
    _, r = build_reader("1122334455667788")
    expect(r, cos.get_data(0xDF01), data=bytes.fromhex("DF01081122334455667788"))


def test_get_data_df02_life_cycle() -> None:
    _, r = build_reader()
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF020101"))
    _, r = standard_card(INITIALIZED)
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF020107"))
    _, r = standard_card(PERSONALIZED)
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF02010F"))


def test_get_data_df03_os_version() -> None:
    _, r = build_reader()
    expect(r, cos.get_data(0xDF03), data=b"\xdf\x03\x08CPOS0100")


def test_get_data_df04_free_memory() -> None:
    _, r = build_reader()
    expect(r, cos.get_data(0xDF04), data=b"\xdf\x04\x02" + BLANK_FREE.to_bytes(2, "big"))
    expect(r, cos.create_file(cos.fcp_df(0x3F00)))  # no name: no heap
    assert get_data_value(r, 0xDF04) == BLANK_FREE.to_bytes(2, "big")
    expect(r, cos.create_file(cos.fcp_transparent(0x0101, 100)))  # 7 blocks
    assert get_data_value(r, 0xDF04) == (BLANK_FREE - 112).to_bytes(2, "big")
    expect(r, cos.put_key(1, cos.ALG_AES256, cos.USE_EXT_AUTH, bytes(32)))  # 2 blocks
    assert get_data_value(r, 0xDF04) == (BLANK_FREE - 144).to_bytes(2, "big")


def test_get_data_df05_layout() -> None:
    _, r = build_reader()
    expect(r, cos.get_data(0xDF05), data=bytes.fromhex("DF050A00008000004020044010"))


def test_get_data_df06_personalization_lock() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.get_data(0xDF06), data=bytes.fromhex("DF060100"))
    expect(r, cos.set_lifecycle(INITIALIZED))
    expect(r, cos.get_data(0xDF06), data=bytes.fromhex("DF060101"))


def test_get_data_9f7f_cplc_is_42_bytes() -> None:
    """GlobalPlatform Card Spec 2.3 Table H-6: CPLC is 42 bytes; the IC serial
    (bytes 13-16) is the first four bytes of the chip serial (commands_admin._cplc)."""
    _, r = build_reader("A1B2C3D4E5F60718")
    out = expect(r, cos.get_data(0x9F7F))
    assert out[:3] == bytes.fromhex("9F7F2A"), out[:3].hex()
    cplc = out[3:]
    assert len(cplc) == 42
    assert cplc[0:2] == bytes.fromhex("4350")  # IC fabricator
    assert cplc[2:4] == bytes.fromhex("0001")  # IC type
    assert cplc[4:6] == bytes.fromhex("4350")  # operating system identifier
    assert cplc[12:16] == bytes.fromhex("A1B2C3D4")  # IC serial number
    assert cplc[18:] == bytes(24)  # nothing after the batch identifier is recorded


def test_get_data_unknown_tag_6a88_and_data_field_6700() -> None:
    _, r = build_reader()
    for tag in (0x0042, 0xDF00, 0xDF07, 0x9F7E, 0x5F20):
        expect(r, cos.get_data(tag), 0x6A88)
    expect(r, apdu(0x00, 0xCA, 0xDF, 0x01, b"\x00", le=256), 0x6700)


def test_get_data_still_answers_on_a_terminated_card() -> None:
    _, r = standard_card(INITIALIZED)
    expect(r, cos.set_lifecycle(0xFF))
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF0201FF"))
    expect(r, cos.get_data(0xDF01), data=b"\xdf\x01\x08" + SERIAL)


# == PUT KEY ==========================================================================


@pytest.mark.parametrize(
    ("alg", "value", "family"),
    [
        (cos.ALG_TDES2, TDES_AUTH, "TDES"),
        (cos.ALG_TDES3, TDES_SM, "TDES"),
        (cos.ALG_AES128, KD, "AES"),
        (cos.ALG_AES256, bytes(range(32)), "AES"),
    ],
)
def test_put_key_loads_a_usable_key_in_clear_while_manufactured(
    alg: int, value: bytes, family: str
) -> None:
    _, r = build_reader()
    expect(r, cos.put_key(7, alg, cos.USE_EXT_AUTH, value, tries=2), data=b"")
    assert external_auth(r, 7, value, family) == 0x9000
    r.reset()
    assert external_auth(r, 7, value, family) == 0x9000  # it is in EEPROM
    expect(r, cos.get_challenge(8 if family == "TDES" else 16))
    expect(r, cos.external_authenticate(7, bytes(8 if family == "TDES" else 16)), 0x63C1)


def test_put_key_replaces_the_key_and_withdraws_its_authentication() -> None:
    _, r = standard_card(MANUFACTURED)
    assert external_auth(r, 1, KD, "AES") == 0x9000
    new = bytes(range(0x20, 0x30))
    expect(r, cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_SM, new, tries=3))
    expect(r, cos.set_lifecycle(INITIALIZED))  # access conditions enforced from here
    expect(r, cos.update_binary(b"x", sfi=1), 0x6982)  # EF 5001: update = key 1
    assert external_auth(r, 1, KD, "AES") == 0x63C2
    assert external_auth(r, 1, new, "AES") == 0x9000
    expect(r, cos.update_binary(b"x", sfi=1))


def test_put_key_authentication_survives_the_lifecycle_change_without_a_reload() -> None:
    """Control for the test above: without the reload the status stays."""
    _, r = standard_card(MANUFACTURED)
    assert external_auth(r, 1, KD, "AES") == 0x9000
    expect(r, cos.set_lifecycle(INITIALIZED))
    expect(r, cos.update_binary(b"x", sfi=1))


def _key_data(*dos: tuple[int, bytes]) -> bytes:
    return b"".join(tlv.encode(t, v) for t, v in dos)


A, U, V, L, K = 0x80, 0x81, 0x82, 0x83, 0x8F
AES16 = bytes(16)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_key_data((A, b"\x03"), (U, b"\x01")), id="no 8F value"),
        pytest.param(_key_data((U, b"\x01"), (K, AES16)), id="no 80 algorithm"),
        pytest.param(_key_data((A, b"\x03"), (K, AES16)), id="no 81 usage"),
        pytest.param(_key_data((A, b"\x03\x00"), (U, b"\x01"), (K, AES16)), id="80 two bytes"),
        pytest.param(_key_data((A, b""), (U, b"\x01"), (K, AES16)), id="80 empty"),
        pytest.param(_key_data((A, b"\x04"), (U, b"\x01"), (K, AES16)), id="unknown alg 04"),
        pytest.param(_key_data((A, b"\x00"), (U, b"\x01"), (K, AES16)), id="unknown alg 00"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x01"), (K, bytes(24))), id="AES-128 24 B"),
        pytest.param(_key_data((A, b"\x05"), (U, b"\x01"), (K, AES16)), id="AES-256 16 B"),
        pytest.param(_key_data((A, b"\x01"), (U, b"\x01"), (K, bytes(24))), id="3DES-2 24 B"),
        pytest.param(_key_data((A, b"\x02"), (U, b"\x01"), (K, AES16)), id="3DES-3 16 B"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x00"), (K, AES16)), id="usage 0"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x10"), (K, AES16)), id="usage ECDH"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x20"), (K, AES16)), id="usage bit 6"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x01\x02"), (K, AES16)), id="81 two bytes"),
        pytest.param(_key_data((A, b"\x03"), (U, b"\x01"), (V, b""), (K, AES16)), id="82 empty"),
        pytest.param(
            _key_data((A, b"\x03"), (U, b"\x01"), (L, b"\x10"), (K, AES16)), id="16 tries"
        ),
        pytest.param(
            _key_data((A, b"\x03"), (U, b"\x01"), (L, b"\x01\x00"), (K, AES16)), id="83 2B"
        ),
        pytest.param(
            _key_data((A, b"\x03"), (U, b"\x01"), (0x84, b"\x00"), (K, AES16)), id="unknown tag"
        ),
        pytest.param(
            _key_data((A, b"\x03"), (A, b"\x03"), (U, b"\x01"), (K, AES16)), id="80 twice"
        ),
        pytest.param(b"\x80\x01\x03\x81\x01\x01\x8f\x11" + AES16, id="value runs past the end"),
        pytest.param(b"\x80\x01", id="truncated TLV"),
    ],
)
def test_put_key_validation_6a80(data: bytes) -> None:
    _, r = build_reader()
    expect(r, apdu(0x80, 0xD8, 0x00, 0x07, data), 0x6A80)
    assert external_auth(r, 7, AES16, "AES") == 0x6A88  # nothing was stored


def test_put_key_accepted_limits() -> None:
    _, r = build_reader()
    data = _key_data((A, b"\x03"), (U, b"\x0d"), (V, b"\xff"), (L, b"\x0f"), (K, AES16))
    expect(r, apdu(0x80, 0xD8, 0x00, 0x0F, data))  # ext auth + SM + admin, 15 tries, ref 15
    expect(r, apdu(0x80, 0xD8, 0x00, 0x01, _key_data((A, b"\x03"), (U, b"\x01"), (K, AES16))))


def test_put_object_p1_p2_6a86_and_lengths_6700() -> None:
    _, r = build_reader()
    good = _key_data((A, b"\x03"), (U, b"\x01"), (K, AES16))
    expect(r, apdu(0x80, 0xD8, 0x00, 0x00, good), 0x6A86)
    expect(r, apdu(0x80, 0xD8, 0x00, 0x10, good), 0x6A86)
    expect(r, apdu(0x80, 0xD8, 0x00, 0x81, good), 0x6A86)
    expect(r, apdu(0x80, 0xD8, 0x02, 0x01, good), 0x6A86)
    expect(r, apdu(0x80, 0xD8, 0x00, 0x01), 0x6700)  # no data
    expect(r, apdu(0x80, 0xD8, 0x00, 0x01, good, le=256), 0x6700)


def test_put_key_and_put_pin_need_sm_when_initialized_6982() -> None:
    _, r = standard_card(INITIALIZED)
    expect(r, cos.put_key(7, cos.ALG_AES128, cos.USE_EXT_AUTH, AES16), 0x6982)
    expect(r, cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH, AES16), 0x6982)  # replace
    expect(r, cos.put_pin(7, f2("1234")), 0x6982)
    assert external_auth(r, 1, KD, "AES") == 0x9000  # key 1 unchanged
    expect(r, cos.put_key(7, cos.ALG_AES128, cos.USE_EXT_AUTH, AES16), 0x6982)  # still
    assert external_auth(r, 7, AES16, "AES") == 0x6A88


def test_put_key_and_put_pin_refused_once_personalized_6985() -> None:
    _, r = standard_card(PERSONALIZED)
    expect(r, cos.put_key(7, cos.ALG_AES128, cos.USE_EXT_AUTH, AES16), 0x6985)
    expect(r, cos.put_pin(7, f2("1234")), 0x6985)
    expect(r, cos.put_pin(3, f2("0000")), 0x6985)
    expect(r, cos.verify(3, f2("1234")))


# == PUT PIN ==========================================================================


def test_put_pin_loads_in_clear_while_manufactured() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.put_pin(7, f2("24680"), tries=2, min_len=5, max_len=6), data=b"")
    expect(r, cos.set_lifecycle(INITIALIZED))
    expect(r, cos.verify(7), 0x63C2)
    expect(r, cos.verify(7, f2("24680")))
    expect(r, cos.change_reference_data(7, f2("24680"), f2("1234567")), 0x6A80)  # max 6


def test_put_pin_replaces_the_value_and_withdraws_verification() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.verify(3, f2("1234")))
    expect(r, cos.verify(3), 0x9000)
    expect(r, cos.put_pin(3, f2("7777"), tries=5))
    expect(r, cos.verify(3), 0x63C5)  # new limit, not verified
    expect(r, cos.verify(3, f2("1234")), 0x63C4)
    expect(r, cos.verify(3, f2("7777")))


def test_put_pin_transport_flag() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.put_pin(7, f2("0000"), transport=True))
    expect(r, cos.verify(7, f2("0000")), 0x6984)


def _pin_data(*dos: tuple[int, bytes]) -> bytes:
    return b"".join(tlv.encode(t, v) for t, v in dos)


PIN4 = f2("1234")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_pin_data((0x80, b"\x03")), id="no 8F value"),
        pytest.param(_pin_data((0x8F, PIN4)), id="no 80 try limit"),
        pytest.param(_pin_data((0x80, b"\x00"), (0x8F, PIN4)), id="limit 0"),
        pytest.param(_pin_data((0x80, b"\x10"), (0x8F, PIN4)), id="limit 16"),
        pytest.param(_pin_data((0x80, b"\x03\x00"), (0x8F, PIN4)), id="80 two bytes"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x81, b"\x10"), (0x8F, PIN4)), id="PUK 16"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x81, b"\x07"), (0x8F, PIN4)), id="own PUK"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x82, b"\x04"), (0x8F, PIN4)), id="flag 04"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x83, b"\x03"), (0x8F, PIN4)), id="min 3"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x84, b"\x0d"), (0x8F, PIN4)), id="max 13"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x83, b"\x05"), (0x8F, PIN4)), id="PIN < min"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x84, b"\x03"), (0x8F, PIN4)), id="max < 4"),
        pytest.param(
            _pin_data((0x80, b"\x03"), (0x83, b"\x04"), (0x84, b"\x04"), (0x8F, f2("12345"))),
            id="PIN > max",
        ),
        pytest.param(
            _pin_data((0x80, b"\x03"), (0x83, b"\x08"), (0x84, b"\x06"), (0x8F, PIN4)),
            id="min > max",
        ),
        pytest.param(_pin_data((0x80, b"\x03"), (0x85, b"\x00"), (0x8F, PIN4)), id="unknown tag"),
        pytest.param(_pin_data((0x80, b"\x03"), (0x8F, b"1234")), id="not a PIN block"),
        pytest.param(
            _pin_data((0x80, b"\x03"), (0x8F, bytes.fromhex("2412A4FFFFFFFFFF"))), id="non-digit"
        ),
        pytest.param(_pin_data((0x80, b"\x03"), (0x8F, PIN4 + b"\xff")), id="9-byte block"),
        pytest.param(b"\x80\x01\x03\x8f\x09" + PIN4, id="truncated TLV"),
    ],
)
def test_put_pin_validation_6a80(data: bytes) -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, apdu(0x80, 0xD8, 0x01, 0x07, data), 0x6A80)
    expect(r, cos.verify(7), 0x6A88)  # nothing was stored


# == WRITE MEMORY =====================================================================


def test_write_memory_writes_the_image_areas() -> None:
    card, r = standard_card(MANUFACTURED)
    pattern = bytes(range(0xC0, 0xD0))
    expect(r, cos.write_memory(EEPROM_SIZE - 16, pattern), data=b"")
    assert card.eeprom.read(EEPROM_SIZE - 16, 16) == pattern
    want = hashlib.sha256(pattern).digest()
    expect(r, cos.checksum_memory(EEPROM_SIZE - 16, 16), data=want)
    system = card.eeprom.read(SYSTEM, 64)
    expect(r, cos.write_memory(SYSTEM, system))  # the system page is part of an image
    expect(r, cos.write_memory(DIRECTORY, card.eeprom.read(DIRECTORY, 200)))


@pytest.mark.parametrize(("addr", "n"), [(0x7FFF, 2), (0x7F01, 0x100), (0x8000, 1), (0xFFFF, 1)])
def test_write_memory_address_limits_6b00(addr: int, n: int) -> None:
    card, r = standard_card(MANUFACTURED)
    before = bytes(card.eeprom.data)
    expect(r, apdu(0x80, 0xD0, addr >> 8, addr & 0xFF, b"\x5a" * n), 0x6B00)
    assert bytes(card.eeprom.data) == before


@pytest.mark.parametrize(
    ("addr", "n"),
    [
        pytest.param(MANUF, 16, id="manufacturer page"),
        pytest.param(MANUF + 0x30, 8, id="chip serial"),
        pytest.param(FUSE, 4, id="fuse page"),
        pytest.param(JOURNAL, 64, id="journal"),
        pytest.param(DUMP, 16, id="dump area"),
        pytest.param(SYSTEM + 60, 8, id="system page into journal"),
        pytest.param(DUMP + DUMP_SIZE - 4, 8, id="dump area into directory"),
        pytest.param(FUSE + 60, 8, id="fuse page into system page"),
    ],
)
def test_write_memory_protected_areas_6986(addr: int, n: int) -> None:
    card, r = standard_card(MANUFACTURED)
    before = bytes(card.eeprom.data)
    expect(r, cos.write_memory(addr, b"\xa5" * n), 0x6986)
    assert bytes(card.eeprom.data) == before
    expect(r, cos.get_data(0xDF06), data=bytes.fromhex("DF060100"))


def test_write_memory_lengths_6700() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, apdu(0x80, 0xD0, HEAP >> 8, HEAP & 0xFF), 0x6700)
    expect(r, apdu(0x80, 0xD0, HEAP >> 8, HEAP & 0xFF, b"\x00", le=1), 0x6700)


def test_write_memory_bad_image_damages_the_card_until_repaired() -> None:
    card, r = standard_card(MANUFACTURED)
    original = card.eeprom.read(DIRECTORY, 32)  # the MF's directory entry
    expect(
        r, cos.write_memory(DIRECTORY, original[:30] + bytes([original[30] ^ 0xFF, original[31]]))
    )
    expect(r, cos.select_mf(), 0x6581)  # a CRC error: the structure is not trusted
    expect(r, cos.get_data(0xDF01), data=b"\xdf\x01\x08" + SERIAL)  # still diagnosable
    expect(r, cos.get_data(0xDF02), 0x6581)
    entry = card.eeprom.read(DIRECTORY, 32)
    expect(r, cos.checksum_memory(DIRECTORY, 32), data=hashlib.sha256(entry).digest())
    expect(r, cos.load_dump_routine(dump_routine()), 0x6581)
    r.reset()
    expect(r, cos.select_mf(), 0x6581)  # damaged across reset too
    expect(r, cos.write_memory(DIRECTORY, original))  # the repair
    expect(r, cos.select_mf())
    expect(r, cos.select_path(0x5000, 0x5004))
    expect(r, cos.read_binary(0, 16), data=b"INIT-DATA-5004..")


# == LOAD DUMP ROUTINE ================================================================


def _routine(magic: bytes = b"DUMP", version: int = 1, code: bytes = bytes(160)) -> bytes:
    import zlib

    body = magic + bytes([version]) + len(code).to_bytes(2, "big") + code
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_load_dump_routine_enables_read_memory() -> None:
    card, r = standard_card(MANUFACTURED)
    expect(r, cos.read_memory(0, 4), 0x6D00)
    expect(r, cos.load_dump_routine(dump_routine()), data=b"")
    expect(r, cos.read_memory(0, 4), data=b"CPOS")
    expect(r, cos.load_dump_routine(_routine(code=b"other code")))  # any well-formed routine
    expect(r, cos.read_memory(MANUF + 0x10, 8), data=card.eeprom.read(0x10, 8))


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(dump_routine()[:-1] + bytes([dump_routine()[-1] ^ 1]), id="bad CRC"),
        pytest.param(_routine(magic=b"PMUD"), id="bad magic"),
        pytest.param(_routine(version=2), id="bad version"),
        pytest.param(dump_routine()[:-5] + dump_routine()[-4:], id="length mismatch"),
        pytest.param(dump_routine() + b"\x00", id="trailing byte"),
        pytest.param(b"DUMP\x01\x00", id="too short"),
    ],
)
def test_load_dump_routine_invalid_routine_6a80(blob: bytes) -> None:
    card, r = standard_card(MANUFACTURED)
    expect(r, cos.load_dump_routine(blob), 0x6A80)
    expect(r, cos.read_memory(0, 4), 0x6D00)
    assert card.eeprom.read(DUMP, DUMP_SIZE) == bytes(DUMP_SIZE)


def test_load_dump_routine_too_long_6a84() -> None:
    card, r = standard_card(MANUFACTURED)
    expect(r, cos.load_dump_routine(_routine(code=bytes(DUMP_SIZE - 11 + 1))), 0x6A84)
    assert card.eeprom.read(DUMP, DUMP_SIZE) == bytes(DUMP_SIZE)
    expect(r, cos.load_dump_routine(_routine(code=bytes(DUMP_SIZE - 11))))  # fills it exactly


def test_load_dump_routine_p1_p2_6a86_and_lengths_6700() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, apdu(0x80, 0xD2, 0x01, 0x00, dump_routine()), 0x6A86)
    expect(r, apdu(0x80, 0xD2, 0x00, 0x01, dump_routine()), 0x6A86)
    expect(r, apdu(0x80, 0xD2, 0x00, 0x00), 0x6700)
    expect(r, apdu(0x80, 0xD2, 0x00, 0x00, dump_routine(), le=256), 0x6700)


# == READ MEMORY ======================================================================


def test_read_memory_reads_physical_memory_with_the_dump_area_as_zeros() -> None:
    card, r = standard_card(MANUFACTURED)
    expect(r, cos.load_dump_routine(dump_routine()))
    expect(r, cos.read_memory(MANUF, 64), data=card.eeprom.read(MANUF, 64))
    expect(r, cos.read_memory(DIRECTORY, 256), data=card.eeprom.read(DIRECTORY, 256))
    expect(r, cos.read_memory(DUMP, DUMP_SIZE), data=bytes(DUMP_SIZE))  # never the routine
    around = bytearray(card.eeprom.read(DUMP - 8, DUMP_SIZE + 16))
    around[8 : 8 + DUMP_SIZE] = bytes(DUMP_SIZE)
    expect(r, cos.read_memory(DUMP - 8, DUMP_SIZE + 16), data=bytes(around))
    expect(r, cos.read_memory(EEPROM_SIZE - 16, 256), data=card.eeprom.read(EEPROM_SIZE - 16, 16))


def test_read_memory_errors() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.read_memory(0, 16), 0x6D00)  # without the routine the command is unknown
    expect(r, cos.load_dump_routine(dump_routine()))
    expect(r, cos.read_memory(EEPROM_SIZE, 1), 0x6B00)
    expect(r, cos.read_memory(0xFFFF, 1), 0x6B00)
    expect(r, apdu(0x80, 0xB0, 0x00, 0x00), 0x6700)  # no Le
    expect(r, apdu(0x80, 0xB0, 0x00, 0x00, b"\x00\x10", le=16), 0x6700)


# == CHECKSUM MEMORY ==================================================================


@pytest.mark.parametrize(
    ("addr", "n"), [(MANUF, 64), (SYSTEM, 64), (DIRECTORY, 0x1000), (0, EEPROM_SIZE), (0x7FFF, 1)]
)
def test_checksum_memory_is_sha256_of_the_range(addr: int, n: int) -> None:
    card, r = standard_card(MANUFACTURED)
    want = hashlib.sha256(bytes(card.eeprom.data[addr : addr + n])).digest()
    expect(r, cos.checksum_memory(addr, n), data=want)


def test_checksum_memory_errors() -> None:
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.checksum_memory(0x7FFF, 2), 0x6B00)
    expect(r, cos.checksum_memory(0x8000, 1), 0x6B00)
    expect(r, cos.checksum_memory(0x0000, 0), 0x6B00)
    expect(r, apdu(0x80, 0xB4, 0x00, 0x00, b"\x10", le=32), 0x6700)
    expect(r, apdu(0x80, 0xB4, 0x00, 0x00, b"\x00\x10\x00", le=32), 0x6700)
    expect(r, apdu(0x80, 0xB4, 0x00, 0x00, le=32), 0x6700)


# == DEPERSONALIZE (refusals; the full flow is in test_lifecycle.py) =================


def test_depersonalize_refusals() -> None:
    _, r = standard_card(PERSONALIZED)
    expect(r, apdu(0x80, 0xEE, 0x01, 0x00), 0x6A86)
    expect(r, apdu(0x80, 0xEE, 0x00, 0x01), 0x6A86)
    expect(r, apdu(0x80, 0xEE, 0x00, 0x00, b"\x00"), 0x6700)
    expect(r, apdu(0x80, 0xEE, 0x00, 0x00, le=256), 0x6700)
    expect(r, cos.depersonalize(), 0x6982)  # nobody authenticated
    assert external_auth(r, 1, KD, "AES") == 0x9000
    expect(r, cos.depersonalize(), 0x6982)  # key 1 is no admin key
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF02010F"))


def test_depersonalize_needs_a_personalization_era_card_6985() -> None:
    _, r = standard_card(MANUFACTURED)
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    expect(r, cos.depersonalize(), 0x6985)
    _, r = standard_card(INITIALIZED)
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    expect(r, cos.set_lifecycle(0xFF))
    expect(r, cos.depersonalize(), 0x6985)


# == GENERATE PIN (80 DA) ===============================================================


def test_generate_pin_only_under_sm_and_the_pin_works() -> None:
    from sm_host import KD, expect, open_session, standard_card

    _, r = standard_card()
    expect(r, cos.generate_pin(9, 6), 0x6982)  # never in clear: the answer is the PIN
    s = open_session(r, 1, KD, "AES")
    resp = s.send(r, cos.generate_pin(9, 6, tries=3))
    assert resp.sw == 0x9000 and len(resp.data) == 8 and resp.data[0] == 0x26
    digits = resp.data.hex()[2:8]
    assert digits.isdigit() and resp.data.hex()[8:] == "ffffffff"
    expect(r, cos.verify(9, cos.format2(digits)))
    wrong = cos.format2("0" * 6 if digits != "000000" else "111111")
    expect(r, cos.verify(9, wrong), 0x63C2)


def test_generate_pin_parameter_errors() -> None:
    from sm_host import KD, open_session, standard_card

    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    for apdu, sw in [
        (cos.generate_pin(9, 3), 0x6A80),  # shorter than 4
        (cos.generate_pin(9, 13), 0x6A80),  # longer than 12
        (cos.generate_pin(9, 6, tries=0), 0x6A80),
        (cos.generate_pin(9, 6, puk_ref=9), 0x6A80),  # its own PUK
        (cos.generate_pin(9, 6, min_len=8), 0x6A80),  # length below the minimum
    ]:
        assert s.send(r, apdu).sw == sw, apdu.hex()
    assert (
        s.send(r, bytes.fromhex("80DA0010") + bytes([3]) + bytes.fromhex("800104") + b"\x00").sw
        == 0x6A86
    )


def test_generate_pin_refused_once_personalized() -> None:
    from sm_host import KD, expect, open_session, standard_card

    _, r = standard_card()
    expect(r, cos.set_lifecycle(0x0F))
    s = open_session(r, 1, KD, "AES")
    assert s.send(r, cos.generate_pin(9, 6)).sw == 0x6985
