"""Administrative commands: GET DATA (7816-4 §11.4.3) and this OS's documented
proprietary commands (CLA 80) for key and PIN loading, life-cycle transitions,
physical memory access, the dump routine and depersonalization.

Physical memory access (WRITE MEMORY, the dump routine's READ MEMORY, CHECKSUM
MEMORY) works only while the card is MANUFACTURED and the personalization lock -
a one-way fuse blown on the way to INITIALIZED - is not set. Nothing personal can
therefore ever be read or written by address.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.card.dump import is_valid_routine
from cardperso.card.errors import CardError
from cardperso.card.layout import OS_VERSION
from cardperso.card.objects import (
    ALGORITHMS,
    PIN_IS_PUK,
    PIN_TRANSPORT,
    USAGE_ADMIN,
    USAGE_EXT_AUTH,
    USAGE_INT_AUTH,
    USAGE_SM,
    find_object,
    parse_format2,
    store_object,
)
from cardperso.card.store import (
    NO_PARENT,
    PHASE_PERSO_CREATED,
    PHASE_PERSO_WRITTEN,
    Lifecycle,
    ObjType,
    SystemState,
)

if TYPE_CHECKING:
    from cardperso.card.os import CardOS

__all__ = ["HANDLERS", "continue_depersonalization"]


# -- GET DATA ------------------------------------------------------------------
def _cplc(card: CardOS) -> bytes:
    """A GlobalPlatform-style CPLC (GP Card Spec 2.3 Table H-6 layout, 42 bytes):
    fabricator, IC type, OS id/date/level, fab date, IC serial (first 4 bytes of
    our 8-byte serial; the full serial is GET DATA DF01)."""
    info = card.info
    assert info is not None
    serial = info.chip_serial
    return (
        b"\x43\x50"
        + b"\x00\x01"
        + b"\x43\x50"
        + b"\x60\x01"
        + OS_VERSION[-2:]
        + info.fab_date[1:3]
        + serial[:4]
        + b"\x00\x00"
        + bytes(24)
    )


def get_data(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.data:
        raise CardError(0x6700)
    tag = (cmd.p1 << 8) | cmd.p2
    info = card.info
    if info is None:
        raise CardError(0x6581)
    lay = info.layout
    st = card.store
    if tag == 0xDF01:
        value = info.chip_serial
    elif tag == 0xDF02:
        if st is None or card.damaged:
            raise CardError(0x6581)
        value = bytes([st.system.lifecycle])
    elif tag == 0xDF03:
        value = info.os_version
    elif tag == 0xDF04:
        if st is None or card.damaged:
            raise CardError(0x6581)
        value = min(st.free_bytes(), 0xFFFF).to_bytes(2, "big")
    elif tag == 0xDF05:
        value = (
            lay.eeprom_size.to_bytes(4, "big")
            + lay.page_size.to_bytes(2, "big")
            + bytes([lay.journal_pages, lay.dump_pages, lay.dir_entries, lay.block])
        )
    elif tag == 0xDF06:
        value = bytes([0x01 if st is not None and st.locked else 0x00])
    elif tag == 0x9F7F:
        value = _cplc(card)
    else:
        raise CardError(0x6A88)
    return tlv.encode(tag, value)


# -- key and PIN loading ---------------------------------------------------------------
def _loading_allowed(card: CardOS) -> None:
    lc = card.st.system.lifecycle
    if lc == Lifecycle.MANUFACTURED:
        return  # initialization: loaded in clear, as the chapter's KD is
    if lc == Lifecycle.INITIALIZED:
        if not card.ram.sm_command:
            raise CardError(0x6982)  # personalization secrets arrive under SM only
        return
    raise CardError(0x6985)


def _byte(d: dict[int, bytes], tag: int, default: int | None = None) -> int:
    v = d.get(tag)
    if v is None:
        if default is None:
            raise CardError(0x6A80)
        return default
    if len(v) != 1:
        raise CardError(0x6A80)
    return v[0]


def put_object(card: CardOS, cmd: CommandAPDU) -> bytes:
    """PUT KEY (P1 = 00) / PUT PIN (P1 = 01); P2 = reference number 1..15."""
    if not 1 <= cmd.p2 <= 15:
        raise CardError(0x6A86)
    if cmd.p1 not in (0x00, 0x01):
        raise CardError(0x6A86)
    if not cmd.data or cmd.le:
        raise CardError(0x6700)
    _loading_allowed(card)
    try:
        d = tlv.to_dict(cmd.data)
    except tlv.TlvError:
        raise CardError(0x6A80) from None
    value = d.get(0x8F)
    if value is None:
        raise CardError(0x6A80)
    if cmd.p1 == 0x00:
        alg = _byte(d, 0x80)
        usage = _byte(d, 0x81)
        version = _byte(d, 0x82, 0)
        limit = _byte(d, 0x83, 0)
        if alg not in ALGORITHMS or len(value) != ALGORITHMS[alg][1]:
            raise CardError(0x6A80)
        if not usage or usage & ~(USAGE_EXT_AUTH | USAGE_INT_AUTH | USAGE_SM | USAGE_ADMIN):
            raise CardError(0x6A80)
        if limit > 15 or set(d) - {0x80, 0x81, 0x82, 0x83, 0x8F}:
            raise CardError(0x6A80)
        typ, extra = ObjType.KEY, bytes([alg, usage, version, limit, limit])
    else:
        limit = _byte(d, 0x80)
        puk = _byte(d, 0x81, 0)
        flags = _byte(d, 0x82, 0)
        lo, hi = _byte(d, 0x83, 4), _byte(d, 0x84, 12)
        n = parse_format2(value)
        if not 1 <= limit <= 15 or puk > 15 or puk == cmd.p2 or not 4 <= lo <= n <= hi <= 12:
            raise CardError(0x6A80)
        if flags & ~(PIN_TRANSPORT | PIN_IS_PUK) or set(d) - {0x80, 0x81, 0x82, 0x83, 0x84, 0x8F}:
            raise CardError(0x6A80)
        typ, extra = ObjType.PIN, bytes([limit, limit, flags, puk, lo, hi])
    st = card.st
    st.begin()
    store_object(card, typ, cmd.p2, value, extra)
    st.commit()
    if typ == ObjType.PIN:
        card.ram.verified_pins.discard(cmd.p2)
    else:
        card.ram.auth_keys.discard(cmd.p2)
    return b""


def generate_pin(card: CardOS, cmd: CommandAPDU) -> bytes:
    """GENERATE PIN (80 DA 00 ref): the card draws a random PIN, stores it as PIN
    object ``ref`` and answers its ISO 9564-1 format-2 block - the chapter's
    variant where the card generates the PIN and hands it out encrypted for the
    PIN letter. Secure messaging is required in every life-cycle state, so the
    answer leaves the card only as an SM cryptogram that the HSM opens inside.

    Data: 80 length (4..12), 81 try limit, optional 82 PUK reference, 83 minimum
    and 84 maximum length for later changes."""
    if not 1 <= cmd.p2 <= 15 or cmd.p1:
        raise CardError(0x6A86)
    if not cmd.data or cmd.le == 0:
        raise CardError(0x6700)
    if not card.ram.sm_command:
        raise CardError(0x6982)
    if card.st.system.lifecycle not in (Lifecycle.MANUFACTURED, Lifecycle.INITIALIZED):
        raise CardError(0x6985)
    try:
        d = tlv.to_dict(cmd.data)
    except tlv.TlvError:
        raise CardError(0x6A80) from None
    if set(d) - {0x80, 0x81, 0x82, 0x83, 0x84}:
        raise CardError(0x6A80)
    n, limit, puk = _byte(d, 0x80), _byte(d, 0x81), _byte(d, 0x82, 0)
    lo, hi = _byte(d, 0x83, 4), _byte(d, 0x84, 12)
    if not 4 <= lo <= n <= hi <= 12 or not 1 <= limit <= 15 or puk > 15 or puk == cmd.p2:
        raise CardError(0x6A80)
    digits = ""
    while len(digits) < n:  # unbiased: reject bytes >= 250
        b = card.rand(1)[0]
        if b < 250:
            digits += str(b % 10)
    block = bytes.fromhex(f"2{n:X}{digits}".ljust(16, "F"))
    st = card.st
    st.begin()
    store_object(card, ObjType.PIN, cmd.p2, block, bytes([limit, limit, 0, puk, lo, hi]))
    st.commit()
    card.ram.verified_pins.discard(cmd.p2)
    return block


# -- life cycle ----------------------------------------------------------------
def _admin_authenticated(card: CardOS) -> bool:
    for ref in card.ram.auth_keys:
        hit = find_object(card, ObjType.KEY, ref)
        if hit is not None and hit[1].extra[1] & USAGE_ADMIN:
            return True
    return False


def _set_system(card: CardOS, state: SystemState) -> None:
    st = card.st
    st.begin()
    st.set_system(state)
    st.commit()


def _erase_dump(card: CardOS) -> None:
    lay = card.st.layout
    if card.eeprom.read(lay.dump, 4) != bytes(4):
        card.eeprom.write(lay.dump, bytes(lay.dump_pages * lay.page_size))


def set_lifecycle(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p2 or cmd.data or cmd.le:
        raise CardError(0x6A86 if cmd.p2 else 0x6700)
    try:
        target = Lifecycle(cmd.p1)
    except ValueError:
        raise CardError(0x6A86) from None
    st = card.st
    cur = st.system.lifecycle
    admin = _admin_authenticated(card)
    L = Lifecycle
    if (cur, target) == (L.MANUFACTURED, L.INITIALIZED):
        if not any(e.type == ObjType.DF and e.parent == NO_PARENT for _, e in st.iter_entries()):
            raise CardError(0x6985)  # nothing initialized yet
        _erase_dump(card)
    elif (cur, target) == (L.INITIALIZED, L.PERSONALIZED):
        pass
    elif (cur, target) in ((L.PERSONALIZED, L.BLOCKED), (L.BLOCKED, L.PERSONALIZED)):
        if not admin:
            raise CardError(0x6982)
    elif target == L.TERMINATED and cur != L.TERMINATED:
        if cur in (L.PERSONALIZED, L.BLOCKED) and not admin:
            raise CardError(0x6982)
    else:
        raise CardError(0x6985)
    _set_system(card, SystemState(target, st.system.deperso_pending))
    # Blow the fuse after the life cycle is written: a power cut in between leaves
    # an INITIALIZED card without it, which the next power-up repairs
    # (enforce_lock_invariant); never a MANUFACTURED card with physical access shut.
    card.enforce_lock_invariant()
    return b""


# -- physical memory -------------------------------------------------------------
def _physical_allowed(card: CardOS) -> None:
    st = card.st
    if st.locked:
        raise CardError(0x6986)
    if not card.damaged and st.system.lifecycle != Lifecycle.MANUFACTURED:
        raise CardError(0x6986)


def _address(card: CardOS, addr: int, length: int) -> None:
    if length <= 0 or addr + length > card.st.layout.eeprom_size:
        raise CardError(0x6B00)


def write_memory(card: CardOS, cmd: CommandAPDU) -> bytes:
    """WRITE MEMORY: image bytes to a physical address (system page, directory,
    bitmap, heap only)."""
    _physical_allowed(card)
    if not cmd.data or cmd.le:
        raise CardError(0x6700)
    addr = (cmd.p1 << 8) | cmd.p2
    _address(card, addr, len(cmd.data))
    end = addr + len(cmd.data)
    if not any(a <= addr and end <= a + n for a, n in card.st.layout.image_ranges()):
        raise CardError(0x6986)
    card.eeprom.write(addr, cmd.data)
    try:
        card.st.reload()
        card.damaged = False
    except CardError:
        card.damaged = True  # the image is incomplete or bad: checksum tells the host
        return b""
    card.enforce_lock_invariant()
    card.select_mf()
    return b""


def load_dump_routine(card: CardOS, cmd: CommandAPDU) -> bytes:
    _physical_allowed(card)
    if card.damaged:
        raise CardError(0x6581)
    if cmd.p1 or cmd.p2:
        raise CardError(0x6A86)
    if not cmd.data or cmd.le:
        raise CardError(0x6700)
    lay = card.st.layout
    if len(cmd.data) > lay.dump_pages * lay.page_size:
        raise CardError(0x6A84)
    if not is_valid_routine(cmd.data):
        raise CardError(0x6A80)
    card.eeprom.write(lay.dump, cmd.data)
    return b""


def read_memory(card: CardOS, cmd: CommandAPDU) -> bytes:
    """READ MEMORY: served by the dump routine only; the dump area reads as zeros,
    so an image never carries the routine."""
    lay = card.st.layout
    if not is_valid_routine_at(card):
        raise CardError(0x6D00)  # without the routine the OS has no such command
    _physical_allowed(card)
    if cmd.data or cmd.le == 0:
        raise CardError(0x6700)
    addr = (cmd.p1 << 8) | cmd.p2
    n = min(cmd.le, lay.eeprom_size - addr) if addr < lay.eeprom_size else 0
    _address(card, addr, n)
    out = bytearray(card.eeprom.read(addr, n))
    d0, d1 = lay.dump, lay.dump + lay.dump_pages * lay.page_size
    for i in range(max(addr, d0), min(addr + n, d1)):
        out[i - addr] = 0
    return bytes(out)


def is_valid_routine_at(card: CardOS) -> bool:
    lay = card.st.layout
    area = card.eeprom.read(lay.dump, lay.dump_pages * lay.page_size)
    if area[:4] != b"DUMP":
        return False
    n = int.from_bytes(area[5:7], "big")
    return is_valid_routine(area[: 7 + n + 4])


def checksum_memory(card: CardOS, cmd: CommandAPDU) -> bytes:
    """SHA-256 over a physical range: lets the host verify a written image."""
    _physical_allowed(card)
    if len(cmd.data) != 2:
        raise CardError(0x6700)
    addr = (cmd.p1 << 8) | cmd.p2
    n = int.from_bytes(cmd.data, "big")
    _address(card, addr, n)
    card.timing.crypto("sha256", -(-n // 64))
    return hashlib.sha256(card.eeprom.read(addr, n)).digest()


# -- depersonalization -----------------------------------------------------------
def depersonalize(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 or cmd.p2:
        raise CardError(0x6A86)
    if cmd.data or cmd.le:
        raise CardError(0x6700)
    st = card.st
    if st.system.lifecycle not in (
        Lifecycle.INITIALIZED,
        Lifecycle.PERSONALIZED,
        Lifecycle.BLOCKED,
    ):
        raise CardError(0x6985)
    if not _admin_authenticated(card):
        raise CardError(0x6982)
    _set_system(card, SystemState(st.system.lifecycle, True))
    continue_depersonalization(card)
    return b""


def continue_depersonalization(card: CardOS) -> None:
    """Erase personalization, one atomic step at a time; resumed at power-up while
    the pending flag is set, so a power cut cannot leave a half-erased card.

    Objects created during personalization are deleted. Initialization-time EFs
    written during personalization are erased (zeros, no records); initialization-
    time PIN and key objects replaced during personalization are deleted, since
    their old value is gone."""
    st = card.st
    from cardperso.card.commands_file import descendants

    while True:
        victim = next(
            (
                (i, e)
                for i, e in st.iter_entries()
                if e.phase & (PHASE_PERSO_CREATED | PHASE_PERSO_WRITTEN)
            ),
            None,
        )
        if victim is None:
            break
        idx, e = victim
        if e.phase & PHASE_PERSO_CREATED or not e.is_file:
            # one object per transaction, deepest first, so no step can outgrow
            # the journal however large the subtree
            doomed = descendants(card, idx) if e.type == ObjType.DF else [idx]
            for i in reversed(doomed):
                d = st.entry(i)
                if d is None or any(c.parent == i for _, c in st.iter_entries() if c.is_file):
                    continue
                st.begin()
                st.release(d.body, d.alloc)
                st.put_entry(i, None)
                st.commit()
            continue
        # initialization EF overwritten in personalization: zero it, then clear flag
        if e.alloc:
            card.eeprom.write(e.body, bytes(e.alloc))
        clean = e.copy()
        clean.phase &= ~PHASE_PERSO_WRITTEN & 0xFF
        if clean.type == ObjType.EF_LINEAR:
            clean.nrec = 0
        st.begin()
        st.put_entry(idx, clean)
        st.commit()
    # initialization-time PINs and keys get their full try counters back
    for idx, e in st.iter_entries():
        limit_i, left_i = (0, 1) if e.type == ObjType.PIN else (3, 4)
        if e.type in (ObjType.PIN, ObjType.KEY) and e.extra[left_i] != e.extra[limit_i]:
            full = e.copy()
            full.extra[left_i] = full.extra[limit_i]
            st.begin()
            st.put_entry(idx, full)
            st.commit()
    _set_system(card, SystemState(Lifecycle.INITIALIZED, False))
    card.ram.verified_pins.clear()
    card.ram.auth_keys.clear()
    card.ram.sm = None
    card.ram.ga_pending = None
    card.ram.current_ef = None
    card.select_mf()


HANDLERS = {
    (0x00, 0xCA): get_data,
    (0x80, 0xD8): put_object,
    (0x80, 0xDA): generate_pin,
    (0x80, 0xF0): set_lifecycle,
    (0x80, 0xD0): write_memory,
    (0x80, 0xD2): load_dump_routine,
    (0x80, 0xB0): read_memory,
    (0x80, 0xB4): checksum_memory,
    (0x80, 0xEE): depersonalize,
}
