"""Where everything lives in EEPROM: the memory map, shared by the OS, the
consistency checker and the vendor's offline tools.

Physical map (all areas page-aligned; addresses are 16-bit, so at most 64 KiB)::

    page 0          manufacturer page (written once at chip manufacture; never by
                    WRITE MEMORY): magic, layout parameters, OS version, chip serial
    page 1          fuse page: the personalization lock (one-way: once any bit is
                    set the card treats it as locked; never written by WRITE MEMORY)
    page 2          system page: card life cycle, flags
    journal         journal_pages pages: header page + page images (redo log)
    dump area       dump_pages pages: the dump routine when loaded, else zeros
    directory       dir_entries x 32-byte object entries (files, PINs, keys)
    bitmap          one bit per heap block (the allocation table)
    heap            file bodies and secret values, in blocks of ``block`` bytes

Integers are big-endian. Each manufacturer page, system page and directory entry
ends in a CRC-16/CCITT (``binascii.crc_hqx``) so corrupted EEPROM is detected
(SW 6581) instead of being trusted.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

__all__ = [
    "DIR_ENTRY_SIZE",
    "MAGIC",
    "OS_VERSION",
    "Layout",
    "ManufacturerInfo",
    "crc16",
    "pack_manufacturer",
    "unpack_manufacturer",
]

MAGIC = b"CPOS"
LAYOUT_VERSION = 1
OS_VERSION = b"CPOS0100"  # the ROM mask identifier of this simulated OS
DIR_ENTRY_SIZE = 32


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) guarding EEPROM structures."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True)
class Layout:
    """Memory map parameters; every address below is derived from these."""

    eeprom_size: int = 32 * 1024
    page_size: int = 64
    journal_pages: int = 32
    dump_pages: int = 4
    dir_entries: int = 64
    block: int = 16

    def __post_init__(self) -> None:
        if self.eeprom_size > 0x10000:
            raise ValueError("this OS addresses at most 64 KiB of EEPROM")
        if self.page_size < 64 or self.page_size & (self.page_size - 1):
            raise ValueError("page size must be a power of two, at least 64")
        if not 1 <= self.dir_entries <= 255:
            raise ValueError("1..255 directory entries")
        if self.journal_pages < 2 or self.dump_pages < 1:
            raise ValueError("journal needs >= 2 pages, dump area >= 1")
        if self.heap_size < self.block * 8:
            raise ValueError("EEPROM too small for this layout")

    def _pages(self, n: int) -> int:
        return -(-n // self.page_size) * self.page_size

    @property
    def manufacturer(self) -> int:
        return 0

    @property
    def fuse(self) -> int:
        return self.page_size

    @property
    def system(self) -> int:
        return 2 * self.page_size

    @property
    def journal(self) -> int:
        return 3 * self.page_size

    @property
    def dump(self) -> int:
        return self.journal + self.journal_pages * self.page_size

    @property
    def directory(self) -> int:
        return self.dump + self.dump_pages * self.page_size

    @property
    def bitmap(self) -> int:
        return self.directory + self._pages(self.dir_entries * DIR_ENTRY_SIZE)

    @property
    def _bitmap_bytes_upper(self) -> int:
        rest = self.eeprom_size - self.bitmap
        return self._pages(-(-rest // self.block // 8))

    @property
    def heap(self) -> int:
        return self.bitmap + self._bitmap_bytes_upper

    @property
    def heap_size(self) -> int:
        return self.eeprom_size - self.heap

    @property
    def heap_blocks(self) -> int:
        return self.heap_size // self.block

    @property
    def bitmap_size(self) -> int:
        return -(-self.heap_blocks // 8)

    @property
    def journal_capacity_pages(self) -> int:
        """How many distinct pages one transaction may change."""
        return (self.journal_pages - 1) * self.page_size // (2 + self.page_size)

    def entry_addr(self, index: int) -> int:
        return self.directory + index * DIR_ENTRY_SIZE

    def block_addr(self, block: int) -> int:
        return self.heap + block * self.block

    def image_ranges(self) -> list[tuple[int, int]]:
        """The address ranges an initialization image covers: system page,
        directory, bitmap and heap - never the manufacturer page (chip serial),
        the fuse page (lock), the journal or the dump area."""
        return [(self.system, self.page_size), (self.directory, self.eeprom_size - self.directory)]


MANUFACTURER_RECORD = 64  # bytes at address 0, whatever the page size
_MANUF = struct.Struct(">4sBHIBBBB8s8s4s")  # 35 bytes, then zeros, CRC in the last 2


@dataclass(frozen=True, slots=True)
class ManufacturerInfo:
    """What the chip manufacturer fixes: layout, OS version, serial, date."""

    layout: Layout
    os_version: bytes
    chip_serial: bytes
    fab_date: bytes  # 4 bytes BCD YYYYMMDD


def pack_manufacturer(info: ManufacturerInfo) -> bytes:
    lay = info.layout
    body = _MANUF.pack(
        MAGIC,
        LAYOUT_VERSION,
        lay.page_size,
        lay.eeprom_size,
        lay.journal_pages,
        lay.dump_pages,
        lay.dir_entries,
        lay.block,
        info.os_version,
        info.chip_serial,
        info.fab_date,
    )
    page = bytearray(MANUFACTURER_RECORD)
    page[: len(body)] = body
    page[-2:] = crc16(bytes(page[:-2])).to_bytes(2, "big")
    return bytes(page)


def unpack_manufacturer(page: bytes) -> ManufacturerInfo | None:
    """Parse page 0, or None if it is not a valid manufacturer page."""
    if len(page) != MANUFACTURER_RECORD or page[:4] != MAGIC:
        return None
    if crc16(page[:-2]) != int.from_bytes(page[-2:], "big"):
        return None
    (_, ver, ps, size, jp, dp, de, blk, osv, serial, fab) = _MANUF.unpack_from(page)
    if ver != LAYOUT_VERSION:
        return None
    try:
        lay = Layout(size, ps, jp, dp, de, blk)
    except ValueError:
        return None
    return ManufacturerInfo(lay, osv, serial, fab)
