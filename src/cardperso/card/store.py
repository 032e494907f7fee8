"""The persistent object store: directory entries, the allocation bitmap and the
system page, read from and written to EEPROM through journal transactions.

Decoded copies of the directory and bitmap are kept as RAM caches only; they are
rebuilt from EEPROM at every power-up and after any physical memory write, and
:mod:`cardperso.card.check` proves they agree with the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum

from cardperso.card.errors import CardError
from cardperso.card.journal import Journal, Transaction
from cardperso.card.layout import DIR_ENTRY_SIZE, Layout, crc16
from cardperso.card.memory import Eeprom

__all__ = ["Entry", "Lifecycle", "ObjType", "Store", "SystemState"]

NO_PARENT = 0xFF


class ObjType(IntEnum):
    """Directory entry types (byte 0 of an entry)."""

    FREE = 0x00
    DF = 0x01
    EF_TRANSPARENT = 0x02
    EF_LINEAR = 0x03
    PIN = 0x10
    KEY = 0x11
    ECKEY = 0x12


class Lifecycle(IntEnum):
    """Card life cycle (values follow GlobalPlatform Card Spec 2.3 §5.1.1)."""

    MANUFACTURED = 0x01  # GP OP_READY: chip made, serial fixed, nothing loaded
    INITIALIZED = 0x07  # file structure and KD loaded
    PERSONALIZED = 0x0F  # GP SECURED: card-specific data loaded, perso lock set
    BLOCKED = 0x7F  # GP CARD_LOCKED
    TERMINATED = 0xFF


_ENTRY = struct.Struct(">BBHBBHHBBBB7sB8s")  # 30 bytes + CRC-16

# phase flags (entry byte 21)
PHASE_PERSO_CREATED = 0x01  # created while the card was INITIALIZED (personalization)
PHASE_PERSO_WRITTEN = 0x02  # content written during personalization


@dataclass(slots=True)
class Entry:
    """One 32-byte directory entry, decoded. ``extra`` is type-specific (8 bytes)."""

    type: ObjType
    lcs: int = 0x05
    fid: int = 0  # FID for files, reference number for PIN/key objects
    parent: int = NO_PARENT
    sfi: int = 0
    body: int = 0
    alloc: int = 0
    size: int = 0  # transparent: data size; linear: record length
    max_records: int = 0
    nrec: int = 0
    am: int = 0
    sc: bytes = bytes(7)  # security conditions for AM bits b7..b1, in that order
    phase: int = 0
    extra: bytearray = field(default_factory=lambda: bytearray(8))

    def pack(self) -> bytes:
        raw = _ENTRY.pack(
            self.type,
            self.lcs,
            self.fid,
            self.parent,
            self.sfi,
            self.body,
            self.alloc,
            self.size & 0xFF if self.type == ObjType.EF_LINEAR else 0,
            self.max_records,
            self.nrec,
            self.am,
            self.sc,
            self.phase,
            bytes(self.extra),
        )
        if self.type != ObjType.EF_LINEAR:
            raw = raw[:10] + self.size.to_bytes(2, "big") + raw[12:]
        return raw + crc16(raw).to_bytes(2, "big")

    @classmethod
    def unpack(cls, raw: bytes) -> Entry | None:
        """Decode; None for a free slot. Raises CardError(6581) on a bad CRC."""
        if raw[0] == ObjType.FREE:
            return None
        if crc16(raw[:30]) != int.from_bytes(raw[30:32], "big"):
            raise CardError(0x6581)
        (t, lcs, fid, parent, sfi, body, alloc, reclen, maxrec, nrec, am, sc, phase, extra) = (
            _ENTRY.unpack(raw[:30])
        )
        try:
            typ = ObjType(t)
        except ValueError:
            raise CardError(0x6581) from None
        if typ != ObjType.EF_LINEAR:
            reclen, maxrec = int.from_bytes(raw[10:12], "big"), 0
        size = reclen
        return cls(
            typ,
            lcs,
            fid,
            parent,
            sfi,
            body,
            alloc,
            size,
            maxrec,
            nrec,
            am,
            sc,
            phase,
            bytearray(extra),
        )

    def copy(self) -> Entry:
        return replace(self, extra=bytearray(self.extra))

    @property
    def is_file(self) -> bool:
        return self.type in (ObjType.DF, ObjType.EF_TRANSPARENT, ObjType.EF_LINEAR)

    @property
    def is_ef(self) -> bool:
        return self.type in (ObjType.EF_TRANSPARENT, ObjType.EF_LINEAR)


_SYS = struct.Struct(">BB")  # lifecycle, flags
FLAG_DEPERSO_PENDING = 0x01


@dataclass(slots=True)
class SystemState:
    lifecycle: Lifecycle = Lifecycle.MANUFACTURED
    deperso_pending: bool = False

    def pack(self, page_size: int) -> bytes:
        flags = FLAG_DEPERSO_PENDING if self.deperso_pending else 0
        body = _SYS.pack(self.lifecycle, flags)
        page = bytearray(page_size)
        page[: len(body)] = body
        page[-2:] = crc16(bytes(page[:-2])).to_bytes(2, "big")
        return bytes(page)

    @classmethod
    def unpack(cls, page: bytes) -> SystemState:
        if crc16(page[:-2]) != int.from_bytes(page[-2:], "big"):
            raise CardError(0x6581)
        lc, flags = _SYS.unpack_from(page)
        try:
            lifecycle = Lifecycle(lc)
        except ValueError:
            raise CardError(0x6581) from None
        if flags & ~FLAG_DEPERSO_PENDING:
            raise CardError(0x6581)
        return cls(lifecycle, bool(flags & FLAG_DEPERSO_PENDING))


class Store:
    """Typed access to the persistent structures, with RAM caches."""

    def __init__(self, eeprom: Eeprom, layout: Layout) -> None:
        self.eeprom = eeprom
        self.layout = layout
        self.journal = Journal(eeprom, layout)
        self.entries: list[Entry | None] = []
        self.bitmap = bytearray()
        self.system = SystemState()
        self._txn: Transaction | None = None
        self._pending_entries: dict[int, Entry | None] = {}
        self._pending_system: SystemState | None = None

    # -- the personalization lock (a one-way fuse) ---------------------------
    @property
    def locked(self) -> bool:
        """Read straight from the fuse page: valid even when structures are damaged."""
        return any(self.eeprom.read(self.layout.fuse, 4))

    def set_lock(self) -> None:
        """Blow the fuse: one page write, atomic, never undone by this OS."""
        self.eeprom.write(self.layout.fuse, b"\xa5" * 4)

    # -- caches -------------------------------------------------------------
    def reload(self) -> None:
        """Rebuild every RAM cache from EEPROM (power-up, after WRITE MEMORY)."""
        lay, ee = self.layout, self.eeprom
        raw = ee.read(lay.directory, lay.dir_entries * DIR_ENTRY_SIZE)
        self.entries = [
            Entry.unpack(raw[i * DIR_ENTRY_SIZE : (i + 1) * DIR_ENTRY_SIZE])
            for i in range(lay.dir_entries)
        ]
        self.bitmap = bytearray(ee.read(lay.bitmap, lay.bitmap_size))
        self.system = SystemState.unpack(ee.read(lay.system, lay.page_size))

    # -- transactions -------------------------------------------------------
    def begin(self) -> Transaction:
        if self._txn is not None:
            raise RuntimeError("nested transaction")
        self._txn = self.journal.begin()
        self._pending_entries = {}
        self._pending_system = None
        return self._txn

    def commit(self, *, uniform: bool = False) -> None:
        txn = self._txn
        if txn is None:
            raise RuntimeError("no transaction")
        txn.commit(uniform=uniform)
        self._txn = None
        for idx, e in self._pending_entries.items():
            self.entries[idx] = e
        if self._pending_system is not None:
            self.system = self._pending_system
        self._pending_entries = {}
        self._pending_system = None

    def abort(self) -> None:
        """Drop staged changes (nothing reached EEPROM); bitmap cache is re-read."""
        if self._txn is not None:
            self._txn = None
            self._pending_entries = {}
            self._pending_system = None
            self.bitmap = bytearray(self.eeprom.read(self.layout.bitmap, self.layout.bitmap_size))

    @property
    def txn(self) -> Transaction:
        if self._txn is None:
            raise RuntimeError("no transaction")
        return self._txn

    # -- directory ----------------------------------------------------------
    def entry(self, idx: int) -> Entry | None:
        if idx in self._pending_entries:
            return self._pending_entries[idx]
        return self.entries[idx]

    def put_entry(self, idx: int, e: Entry | None) -> None:
        raw = e.pack() if e is not None else bytes(DIR_ENTRY_SIZE)
        self.txn.write(self.layout.entry_addr(idx), raw)
        self._pending_entries[idx] = e.copy() if e is not None else None

    def free_slot(self) -> int:
        for i in range(self.layout.dir_entries):
            if self.entry(i) is None:
                return i
        raise CardError(0x6A84)

    def iter_entries(self) -> list[tuple[int, Entry]]:
        if not self._pending_entries:  # the common case: no staged directory changes
            return [(i, e) for i, e in enumerate(self.entries) if e is not None]
        out = []
        for i in range(self.layout.dir_entries):
            e = self.entry(i)
            if e is not None:
                out.append((i, e))
        return out

    def set_system(self, state: SystemState) -> None:
        self.txn.write(self.layout.system, state.pack(self.layout.page_size))
        self._pending_system = replace(state)

    # -- heap ---------------------------------------------------------------
    def _bit(self, b: int) -> bool:
        return bool(self.bitmap[b >> 3] & (0x80 >> (b & 7)))

    def _set_bits(self, start: int, count: int, value: bool) -> None:
        first, last = start >> 3, (start + count - 1) >> 3
        for b in range(start, start + count):
            if value:
                self.bitmap[b >> 3] |= 0x80 >> (b & 7)
            else:
                self.bitmap[b >> 3] &= ~(0x80 >> (b & 7)) & 0xFF
        self.txn.write(self.layout.bitmap + first, bytes(self.bitmap[first : last + 1]))

    def allocate(self, nbytes: int) -> tuple[int, int]:
        """First-fit allocation; returns (address, allocated bytes). Updates the
        bitmap inside the current transaction."""
        lay = self.layout
        need = max(1, -(-nbytes // lay.block))
        run = 0
        for b in range(lay.heap_blocks):
            if self._bit(b):
                run = 0
                continue
            run += 1
            if run == need:
                start = b - need + 1
                self._set_bits(start, need, True)
                return lay.block_addr(start), need * lay.block
        raise CardError(0x6A84)

    def release(self, addr: int, nbytes: int) -> None:
        lay = self.layout
        if nbytes == 0:
            return
        start = (addr - lay.heap) // lay.block
        self._set_bits(start, nbytes // lay.block, False)

    def free_bytes(self) -> int:
        used = sum(bin(b).count("1") for b in self.bitmap)
        return (self.layout.heap_blocks - used) * self.layout.block
