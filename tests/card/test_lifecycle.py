"""Card life cycle: SET LIFECYCLE (every allowed and refused transition, the
admin-key requirement), the personalization lock, the one-session dump routine,
depersonalization, and the golden-card (memory image) initialization flow.

The four issue must-shows are the tests named after them:
``test_the_dump_routine_is_gone_after_one_reset``,
``test_physical_memory_access_is_refused_after_the_personalization_lock``,
``test_depersonalization_needs_authentication`` and
``test_golden_card_image_clones_a_card_that_keeps_its_own_serial``.
"""

from __future__ import annotations

import binascii
import hashlib

import pytest
from sm_host import (
    ADMIN,
    AID,
    BLOCKED,
    INIT_5004,
    INITIALIZED,
    KD,
    MANUFACTURED,
    PERSONALIZED,
    TERMINATED,
    build_reader,
    expect,
    external_auth,
    open_session,
    standard_card,
    sw_of,
)

from cardperso.apdu import CommandAPDU
from cardperso.card import CardOS, dump_routine
from cardperso.readers import VirtualReader, cos

f2 = cos.format2
NAMES = {
    MANUFACTURED: "M",
    INITIALIZED: "I",
    PERSONALIZED: "P",
    BLOCKED: "B",
    TERMINATED: "T",
}
HEAP_END = 0x8000


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()


def lifecycle(r: VirtualReader) -> int:
    out = expect(r, cos.get_data(0xDF02))
    assert out[:3] == bytes.fromhex("DF0201")
    return out[3]


def locked(r: VirtualReader) -> int:
    out = expect(r, cos.get_data(0xDF06))
    assert out[:3] == bytes.fromhex("DF0601")
    return out[3]


def card_in(state: int, *, admin: bool) -> VirtualReader:
    """The standard card in ``state``; ``admin``: key 2 (admin) authenticated."""
    base = MANUFACTURED if state in (MANUFACTURED, TERMINATED) else INITIALIZED
    _, r = standard_card(PERSONALIZED if state == BLOCKED else base)
    if state == BLOCKED:
        assert external_auth(r, 2, ADMIN, "AES") == 0x9000
        expect(r, cos.set_lifecycle(BLOCKED))
        r.reset()  # drop the authentication used to get here
    elif state == PERSONALIZED:
        expect(r, cos.set_lifecycle(PERSONALIZED))
    elif state == TERMINATED:
        expect(r, cos.set_lifecycle(TERMINATED))
    assert lifecycle(r) == state
    if admin and state != TERMINATED:
        assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    return r


# == SET LIFECYCLE ====================================================================

M, I_, P, B, T = MANUFACTURED, INITIALIZED, PERSONALIZED, BLOCKED, TERMINATED
# (from, to) -> (SW without admin authentication, SW with it)
TRANSITIONS = {
    (M, M): (0x6985, 0x6985),
    (M, I_): (0x9000, 0x9000),
    (M, P): (0x6985, 0x6985),
    (M, B): (0x6985, 0x6985),
    (M, T): (0x9000, 0x9000),
    (I_, M): (0x6985, 0x6985),
    (I_, I_): (0x6985, 0x6985),
    (I_, P): (0x9000, 0x9000),
    (I_, B): (0x6985, 0x6985),
    (I_, T): (0x9000, 0x9000),
    (P, M): (0x6985, 0x6985),
    (P, I_): (0x6985, 0x6985),
    (P, P): (0x6985, 0x6985),
    (P, B): (0x6982, 0x9000),
    (P, T): (0x6982, 0x9000),
    (B, M): (0x6985, 0x6985),
    (B, I_): (0x6985, 0x6985),
    (B, P): (0x6982, 0x9000),
    (B, B): (0x6985, 0x6985),
    (B, T): (0x6982, 0x9000),
    (T, M): (0x6985, 0x6985),
    (T, I_): (0x6985, 0x6985),
    (T, P): (0x6985, 0x6985),
    (T, B): (0x6985, 0x6985),
    (T, T): (0x6985, 0x6985),
}


@pytest.mark.parametrize("admin", [False, True], ids=["no-admin", "admin"])
@pytest.mark.parametrize(
    ("src", "dst"), list(TRANSITIONS), ids=[f"{NAMES[a]}->{NAMES[b]}" for a, b in TRANSITIONS]
)
def test_set_lifecycle_transition(src: int, dst: int, admin: bool) -> None:
    r = card_in(src, admin=admin)
    sw = TRANSITIONS[(src, dst)][admin]
    expect(r, cos.set_lifecycle(dst), sw, data=b"")
    assert lifecycle(r) == (dst if sw == 0x9000 else src)
    r.reset()
    assert lifecycle(r) == (dst if sw == 0x9000 else src)  # persistent


def test_set_lifecycle_admin_means_a_key_with_admin_usage() -> None:
    r = card_in(PERSONALIZED, admin=False)
    assert external_auth(r, 1, KD, "AES") == 0x9000  # ext auth key, but no admin usage
    expect(r, cos.set_lifecycle(BLOCKED), 0x6982)
    open_session(r, 1, KD, "AES")  # SM authentication with key 1 does not help either
    expect(r, cos.set_lifecycle(BLOCKED), 0x6982)
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    r.reset()  # authentication is RAM state
    expect(r, cos.set_lifecycle(BLOCKED), 0x6982)
    assert lifecycle(r) == PERSONALIZED


def test_set_lifecycle_initialized_needs_an_initialized_card() -> None:
    _, r = build_reader()
    expect(r, cos.set_lifecycle(INITIALIZED), 0x6985)  # no MF yet
    assert (lifecycle(r), locked(r)) == (MANUFACTURED, 0)
    expect(r, cos.create_file(cos.fcp_df(0x3F00)))
    expect(r, cos.set_lifecycle(INITIALIZED))
    assert (lifecycle(r), locked(r)) == (INITIALIZED, 1)


def test_set_lifecycle_parameter_errors() -> None:
    _, r = standard_card(INITIALIZED)
    for p1 in (0x00, 0x02, 0x03, 0x05, 0x0E, 0x80, 0xFE):
        expect(r, apdu(0x80, 0xF0, p1, 0x00), 0x6A86)
    expect(r, apdu(0x80, 0xF0, PERSONALIZED, 0x01), 0x6A86)
    expect(r, apdu(0x80, 0xF0, PERSONALIZED, 0x00, b"\x0f"), 0x6700)
    expect(r, apdu(0x80, 0xF0, PERSONALIZED, 0x00, le=256), 0x6700)
    assert lifecycle(r) == INITIALIZED


def test_terminated_card_answers_get_data_only() -> None:
    r = card_in(TERMINATED, admin=False)
    expect(r, cos.get_data(0xDF02), data=bytes.fromhex("DF0201FF"))
    expect(r, cos.get_data(0xDF01), data=bytes.fromhex("DF010800000000000000C1"))
    for cmd in (
        cos.select_mf(),
        cos.select_name(AID),
        cos.read_binary(0, 4, sfi=4),
        cos.verify(3, f2("1234")),
        cos.get_challenge(16),
        cos.write_memory(0x7FF0, b"\x00"),
        cos.load_dump_routine(dump_routine()),
        cos.set_lifecycle(INITIALIZED),
    ):
        expect(r, cmd, 0x6985)


def test_an_image_cannot_leave_manufactured_without_the_lock() -> None:
    """The lock is "a one-way fuse blown on the way to INITIALIZED"
    (commands_admin.py): writing a system page that says INITIALIZED must not give
    a card past MANUFACTURED with the fuse intact. Either WRITE MEMORY refuses
    such a page, or the card ends up locked."""
    _, r = build_reader()
    expect(r, cos.create_file(cos.fcp_df(0x3F00)))
    page = bytearray(64)
    page[0] = INITIALIZED
    page[62:] = binascii.crc_hqx(bytes(page[:62]), 0xFFFF).to_bytes(2, "big")
    sw = sw_of(r, cos.write_memory(0x0080, bytes(page)))
    assert sw in (0x9000, 0x6986)
    if lifecycle(r) != MANUFACTURED:
        assert locked(r) == 1


# == must-show: the dump routine is gone after one reset ===============================


def test_the_dump_routine_is_gone_after_one_reset() -> None:
    card, r = standard_card(MANUFACTURED)
    lay = card.st.layout
    size = lay.dump_pages * lay.page_size
    routine = dump_routine()
    expect(r, cos.read_memory(0, 4), 0x6D00)
    expect(r, cos.load_dump_routine(routine))
    expect(r, cos.read_memory(0, 4), data=b"CPOS")  # the manufacturer page magic
    expect(r, cos.read_memory(lay.dump, size), data=bytes(size))  # never reads itself out
    physical = routine.ljust(size, b"\x00")
    expect(r, cos.checksum_memory(lay.dump, size), data=hashlib.sha256(physical).digest())
    r.reset()
    expect(r, cos.read_memory(0, 4), 0x6D00)
    expect(r, cos.read_memory(lay.dump, size), 0x6D00)
    expect(r, cos.checksum_memory(lay.dump, size), data=hashlib.sha256(bytes(size)).digest())
    assert card.eeprom.read(lay.dump, size) == bytes(size)
    # each load serves one session only
    expect(r, cos.load_dump_routine(routine))
    expect(r, cos.read_memory(0, 4), data=b"CPOS")
    r.close()
    r.reset()
    expect(r, cos.read_memory(0, 4), 0x6D00)
    assert card.eeprom.read(lay.dump, size) == bytes(size)


# == must-show: physical memory access is refused after the personalization lock =======


def _physical_refused(card: CardOS, r: VirtualReader) -> None:
    lay = card.st.layout
    before = bytes(card.eeprom.data)
    expect(r, cos.write_memory(HEAP_END - 16, b"\x5a" * 16), 0x6986)
    expect(r, cos.write_memory(lay.system, card.eeprom.read(lay.system, 64)), 0x6986)
    expect(r, cos.load_dump_routine(dump_routine()), 0x6986)
    expect(r, cos.read_memory(0, 16), 0x6D00)  # the routine is gone and cannot come back
    expect(r, cos.checksum_memory(0, 16), 0x6986)
    expect(r, cos.checksum_memory(lay.directory, 32), 0x6986)
    assert locked(r) == 1
    assert bytes(card.eeprom.data[lay.heap :]) == before[lay.heap :]
    assert card.eeprom.read(lay.dump, 256) == bytes(256)


def test_physical_memory_access_is_refused_after_the_personalization_lock() -> None:
    card, r = standard_card(MANUFACTURED)
    expect(r, cos.load_dump_routine(dump_routine()))  # loaded while still allowed
    expect(r, cos.read_memory(0, 4), data=b"CPOS")
    expect(r, cos.checksum_memory(0, 16))
    expect(r, cos.set_lifecycle(INITIALIZED))
    _physical_refused(card, r)  # same session: the lock erased the routine at once
    r.reset()
    _physical_refused(card, r)
    # personalize, depersonalize: back to INITIALIZED, but the fuse stays blown
    expect(r, cos.set_lifecycle(PERSONALIZED))
    _physical_refused(card, r)
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    expect(r, cos.depersonalize())
    assert lifecycle(r) == INITIALIZED
    _physical_refused(card, r)
    r.reset()
    _physical_refused(card, r)


# == must-show: depersonalization needs authentication =================================


def _personalize(r: VirtualReader) -> None:
    """Personalization-phase changes on an INITIALIZED standard card."""
    expect(r, cos.select_mf())
    expect(r, cos.create_file(cos.fcp_df(0x6000, b"PERSO-APP")))
    expect(r, cos.create_file(cos.fcp_transparent(0x6001, 16)))
    expect(r, cos.update_binary(b"cardholder-data!"))
    expect(r, cos.select_path(0x5000))
    assert external_auth(r, 1, KD, "AES") == 0x9000
    expect(r, cos.update_binary(b"PERSONAL".ljust(64, b"*"), sfi=1))  # init-time EF
    expect(r, cos.verify(3, f2("1234")))
    expect(r, cos.append_record(b"first use".ljust(16, b"."), sfi=2))  # init-time EF
    expect(r, cos.change_reference_data(1, f2("0000"), f2("2468")))  # transport PIN
    expect(r, cos.generate_key_pair(6))
    s = open_session(r, 1, KD, "AES")
    s.expect(r, cos.update_binary(b"SM-PERSONAL-DATA", sfi=3))


def test_depersonalization_needs_authentication() -> None:
    card, r = standard_card(INITIALIZED)
    free_initialized = expect(r, cos.get_data(0xDF04))
    _personalize(r)
    expect(r, cos.set_lifecycle(PERSONALIZED))
    r.reset()
    # refused without an authenticated admin key
    expect(r, cos.depersonalize(), 0x6982)
    assert external_auth(r, 1, KD, "AES") == 0x9000  # a non-admin key does not do
    expect(r, cos.depersonalize(), 0x6982)
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(2, bytes(16)), 0x63C4)  # a wrong admin cryptogram
    expect(r, cos.depersonalize(), 0x6982)
    assert lifecycle(r) == PERSONALIZED
    expect(r, cos.select_path(0x6000, 0x6001))
    expect(r, cos.read_binary(0, 16), data=b"cardholder-data!")  # nothing erased
    # accepted with it
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    expect(r, cos.depersonalize(), data=b"")
    assert (lifecycle(r), locked(r)) == (INITIALIZED, 1)
    # the personalization is gone...
    expect(r, cos.select_mf())
    expect(r, cos.select_fid(0x6000), 0x6A82)
    expect(r, cos.select_name(b"PERSO-APP"), 0x6A82)
    expect(r, cos.select_path(0x5000))
    expect(r, cos.read_binary(0, 64, sfi=1), data=bytes(64))  # erased, not old content
    expect(r, cos.read_record(1, sfi=2), 0x6A83)  # no records
    expect(r, cos.verify(1, f2("2468")), 0x6A88)  # replaced PIN object deleted
    expect(r, cos.verify(1, f2("0000")), 0x6A88)
    expect(r, cos.read_public_key(6), 0x6A88)
    expect(r, cos.update_binary(b"x", sfi=1), 0x6982)  # and so is the security status
    # ...and the initialization structure is kept
    expect(r, cos.read_binary(0, 16, sfi=4), data=INIT_5004)
    expect(r, cos.verify(4, f2("4321")))
    expect(r, cos.verify(3, f2("1234")))
    assert external_auth(r, 1, KD, "AES") == 0x9000
    s = open_session(r, 1, KD, "AES")
    s.expect(r, cos.read_binary(0, 16, sfi=3), data=bytes(16))  # SM EF erased too
    free_after = int.from_bytes(expect(r, cos.get_data(0xDF04))[3:], "big")
    assert free_after == int.from_bytes(free_initialized[3:], "big") + 16  # + PIN 1's block
    r.reset()
    assert lifecycle(r) == INITIALIZED  # nothing pending
    assert card.st.system.deperso_pending is False
    # it can be personalized again
    _personalize_again(r)


def _personalize_again(r: VirtualReader) -> None:
    expect(r, cos.select_mf())
    expect(r, cos.create_file(cos.fcp_df(0x6000, b"PERSO-APP")))
    expect(r, cos.create_file(cos.fcp_transparent(0x6001, 16)))
    expect(r, cos.update_binary(b"second holder..."))
    expect(r, cos.select_path(0x5000))
    assert external_auth(r, 1, KD, "AES") == 0x9000
    expect(r, cos.update_binary(b"PERSONAL-2", sfi=1))
    expect(r, cos.generate_key_pair(6))
    expect(r, cos.set_lifecycle(PERSONALIZED))
    expect(r, cos.select_path(0x6000, 0x6001))
    expect(r, cos.read_binary(0, 16), data=b"second holder...")


@pytest.mark.parametrize("state", [INITIALIZED, PERSONALIZED, BLOCKED], ids=["I", "P", "B"])
def test_depersonalize_from_each_personalization_state(state: int) -> None:
    r = card_in(state, admin=True)
    expect(r, cos.depersonalize(), data=b"")
    assert (lifecycle(r), locked(r)) == (INITIALIZED, 1)
    expect(r, cos.depersonalize(), 0x6982)  # the authentication went with it


def test_depersonalization_leaves_a_usable_current_df() -> None:
    """After DEPERSONALIZE deleted the current DF, the card must not keep pointing
    at the deleted slot: a relative SELECT by FID (7816-4 §7.3.1) or CREATE FILE
    in the current DF must work as on a freshly reset card."""
    _, r = standard_card(INITIALIZED)
    expect(r, cos.select_mf())
    expect(r, cos.create_file(cos.fcp_df(0x6000)))  # perso-time DF, now current
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    expect(r, cos.depersonalize())
    expect(r, cos.select_fid(0x5000))
    expect(r, cos.select_mf())
    expect(r, cos.select_fid(0x5000))


def test_depersonalization_under_sm_ends_the_session() -> None:
    _, r = standard_card(INITIALIZED)
    assert external_auth(r, 2, ADMIN, "AES") == 0x9000
    s = open_session(r, 1, KD, "AES")
    resp = s.send(r, cos.depersonalize())
    assert (resp.data, resp.sw) == (b"", 0x9000)  # plain: the session ended with it
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


# == golden card: initialize by image ====================================================


def _read_image(r: VirtualReader, ranges: list[tuple[int, int]]) -> dict[int, bytes]:
    image = {}
    for start, n in ranges:
        chunks = []
        for addr in range(start, start + n, 256):
            want = min(256, start + n - addr)
            chunks.append(expect(r, cos.read_memory(addr, want)))
            assert len(chunks[-1]) == want
        image[start] = b"".join(chunks)
    return image


def test_golden_card_image_clones_a_card_that_keeps_its_own_serial() -> None:
    golden_serial, clone_serial = "60D0000000000001", "C10E000000000002"
    golden, g = standard_card(MANUFACTURED, serial=golden_serial, seed=1)
    expect(g, cos.update_binary(b"issuer defaults", sfi=1))
    expect(g, cos.append_record(b"init record".ljust(16, b"."), sfi=2))
    assert golden.store is not None
    ranges = golden.store.layout.image_ranges()
    # read the image with the dump routine
    expect(g, cos.load_dump_routine(dump_routine()))
    image = _read_image(g, ranges)
    assert bytes.fromhex(golden_serial) not in b"".join(image.values())
    # write it into a blank card of the same layout
    clone, c = build_reader(clone_serial, seed=2)
    assert clone.store is not None and clone.store.layout == golden.store.layout
    for start, data in image.items():
        for off in range(0, len(data), 240):
            expect(c, cos.write_memory(start + off, data[off : off + 240]))
    for start, data in image.items():
        digest = hashlib.sha256(data).digest()
        expect(g, cos.checksum_memory(start, len(data)), data=digest)
        expect(c, cos.checksum_memory(start, len(data)), data=digest)
    # the clone answers like the golden card...
    c.reset()
    for rd in (g, c):
        expect(rd, cos.select_mf())
    fcp = expect(g, cos.select_name(AID, p2=0x04))
    expect(c, cos.select_name(AID, p2=0x04), data=fcp)
    for cmd in (
        cos.read_binary(0, 64, sfi=1),
        cos.read_binary(0, 16, sfi=4),
        cos.read_record(1, sfi=2),
        cos.get_data(0xDF02),
        cos.get_data(0xDF04),
    ):
        want = expect(g, cmd)
        expect(c, cmd, data=want)
    expect(c, cos.read_record(2, sfi=2), 0x6A83)
    # ...but keeps its own chip serial
    expect(g, cos.get_data(0xDF01), data=bytes.fromhex("DF0108" + golden_serial))
    expect(c, cos.get_data(0xDF01), data=bytes.fromhex("DF0108" + clone_serial))
    # the image carried no dump routine, and the clone goes on like any card
    expect(c, cos.read_memory(0, 4), 0x6D00)
    assert clone.eeprom.read(clone.store.layout.dump, 256) == bytes(256)
    expect(c, cos.set_lifecycle(INITIALIZED))
    expect(c, cos.select_path(0x5000))
    expect(c, cos.verify(3, f2("1234")))
    expect(c, cos.verify(1, f2("0000")), 0x6984)
    assert external_auth(c, 1, KD, "AES") == 0x9000
    open_session(c, 1, KD, "AES").expect(c, cos.read_binary(0, 4, sfi=3), data=bytes(4))
    expect(c, cos.get_data(0xDF06), data=bytes.fromhex("DF060101"))
