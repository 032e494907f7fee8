"""All-or-nothing EEPROM updates: a page-image redo journal.

A transaction stages writes in RAM, coalesced into whole new page images.
Commit:

1. write every changed page image into the journal area (``addr`` + 64 bytes each);
2. write the journal header page with state COMMITTED and a CRC-32 over the images
   - this single page write is the commit point;
3. copy the images to their home pages;
4. write the header back to EMPTY.

At power-up :meth:`Journal.recover` replays a COMMITTED journal whose CRC checks
(step 3 may have been cut anywhere) and ignores anything else (cut before step 2).
A power cut after any page write therefore leaves the old state or the new state,
never a mix. A transaction that changes a single page skips the journal: one page
write is already atomic.
"""

from __future__ import annotations

import struct
import zlib

from cardperso.card.errors import CardError
from cardperso.card.layout import Layout
from cardperso.card.memory import Eeprom

__all__ = ["Journal", "Transaction"]

_EMPTY = 0x00
_COMMITTED = 0xC3
_HDR = struct.Struct(">BHI")  # state, number of page images, CRC-32 of the images


class Transaction:
    """Staged writes with read-your-writes; commit through the journal."""

    def __init__(self, journal: Journal) -> None:
        self._j = journal
        self._pages: dict[int, bytearray] = {}

    def read(self, addr: int, length: int) -> bytes:
        ee, ps = self._j.eeprom, self._j.layout.page_size
        if not self._pages:
            return ee.read(addr, length)
        out = bytearray()
        pos = addr
        end = addr + length
        while pos < end:
            base = pos - pos % ps
            take = min(base + ps, end) - pos
            page = self._pages.get(base)
            out += page[pos - base : pos - base + take] if page else ee.read(pos, take)
            pos += take
        return bytes(out)

    def write(self, addr: int, payload: bytes) -> None:
        ee, ps = self._j.eeprom, self._j.layout.page_size
        if addr < 0 or addr + len(payload) > ee.size:
            raise IndexError("write out of range")
        pos = 0
        while pos < len(payload):
            a = addr + pos
            base = a - a % ps
            take = min(base + ps - a, len(payload) - pos)
            page = self._pages.get(base)
            if page is None:
                page = bytearray(ee.read(base, ps))
                self._pages[base] = page
            page[a - base : a - base + take] = payload[pos : pos + take]
            pos += take
        if len(self._pages) > self._j.layout.journal_capacity_pages:
            raise CardError(0x6A84)  # more change than the journal can hold

    @property
    def changed_pages(self) -> int:
        return len(self._pages)

    def commit(self, *, uniform: bool = False) -> None:
        """Make the staged writes durable, all or nothing.

        Normally pages whose content does not change are skipped. ``uniform``
        writes every staged page anyway, so that two outcomes of a secret
        comparison that stage the same pages cost the same page writes and cannot
        be told apart by watching the programming pulses."""
        ee = self._j.eeprom
        changed = {
            b: bytes(p) for b, p in self._pages.items() if uniform or ee.read(b, len(p)) != bytes(p)
        }
        self._pages.clear()
        if not changed:
            return
        if len(changed) == 1:
            ((base, page),) = changed.items()
            ee.write(base, page)
            return
        self._j.write_through_journal(changed, uniform=uniform)


class Journal:
    """The journal area and its recovery."""

    def __init__(self, eeprom: Eeprom, layout: Layout) -> None:
        self.eeprom = eeprom
        self.layout = layout

    def begin(self) -> Transaction:
        return Transaction(self)

    def write_through_journal(self, pages: dict[int, bytes], *, uniform: bool = False) -> None:
        lay, ee = self.layout, self.eeprom
        images = b"".join(base.to_bytes(2, "big") + page for base, page in sorted(pages.items()))
        ee.write(lay.journal + lay.page_size, images)
        header = _HDR.pack(_COMMITTED, len(pages), zlib.crc32(images))
        ee.write(lay.journal, header.ljust(lay.page_size, b"\x00"))  # commit point
        self._apply(images, len(pages), force=uniform)
        ee.write(lay.journal, bytes(lay.page_size))

    def _apply(self, images: bytes, count: int, *, force: bool = False) -> None:
        ps = self.layout.page_size
        for i in range(count):
            rec = images[i * (ps + 2) : (i + 1) * (ps + 2)]
            base = int.from_bytes(rec[:2], "big")
            if force or self.eeprom.read(base, ps) != rec[2:]:
                self.eeprom.write(base, rec[2:])

    def recover(self) -> bool:
        """Finish a committed transaction cut short by a power loss; True if one was."""
        lay, ee = self.layout, self.eeprom
        state, count, crc = _HDR.unpack(ee.read(lay.journal, _HDR.size))
        if state == _EMPTY and count == 0:
            return False
        ok = bool(state == _COMMITTED and 0 < count <= lay.journal_capacity_pages)
        if ok:
            images = ee.read(lay.journal + lay.page_size, count * (lay.page_size + 2))
            if zlib.crc32(images) == crc:
                self._apply(images, count)
        ee.write(lay.journal, bytes(lay.page_size))
        return ok

    def is_clean(self) -> bool:
        return self.eeprom.read(self.layout.journal, self.layout.page_size) == bytes(
            self.layout.page_size
        )
