"""The card's EEPROM: bytes at physical addresses, written page by page.

Every persistent thing the card OS keeps lives in :attr:`Eeprom.data`; Python
objects beside it are RAM caches at most. A write is split into the pages it
touches; each page write is the unit of atomicity (a real EEPROM programs a page
latch in one erase+write cycle) and the unit of cost in the timing model.

Fault injection: :meth:`Eeprom.arm_power_loss` makes the N+1-th page write from
now on never happen and raise :class:`PowerLost` instead - the card is then dead
until the next power-up, when the journal recovers it.
"""

from __future__ import annotations

from cardperso.card.errors import PowerLost

__all__ = ["Eeprom"]


class Eeprom:
    """Byte-addressable non-volatile memory with page writes and a write counter."""

    def __init__(self, size: int, page_size: int) -> None:
        if size <= 0 or page_size <= 0 or size % page_size:
            raise ValueError("EEPROM size must be a positive multiple of the page size")
        self.size = size
        self.page_size = page_size
        self.data = bytearray(size)
        self.page_writes = 0  # total since manufacture (wear, statistics)
        self.pending_cost_pages = 0  # page writes since the timing model last looked
        self._fail_after: int | None = None

    def arm_power_loss(self, after_page_writes: int | None) -> None:
        """Lose power instead of performing page write number ``after_page_writes``+1."""
        self._fail_after = after_page_writes

    def read(self, addr: int, length: int) -> bytes:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise IndexError("EEPROM read out of range")
        return bytes(self.data[addr : addr + length])

    def write(self, addr: int, payload: bytes) -> None:
        """Program ``payload`` at ``addr``, one page at a time (each page atomically)."""
        if addr < 0 or addr + len(payload) > self.size:
            raise IndexError("EEPROM write out of range")
        ps = self.page_size
        pos = 0
        while pos < len(payload):
            a = addr + pos
            chunk = min(ps - a % ps, len(payload) - pos)
            if self._fail_after is not None:
                if self._fail_after <= 0:
                    self._fail_after = None
                    raise PowerLost
                self._fail_after -= 1
            self.data[a : a + chunk] = payload[pos : pos + chunk]
            self.page_writes += 1
            self.pending_cost_pages += 1
            pos += chunk

    def take_cost_pages(self) -> int:
        """Page writes since the last call (the timing model charges for them)."""
        n, self.pending_cost_pages = self.pending_cost_pages, 0
        return n
