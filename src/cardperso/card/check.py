"""A full consistency check of the EEPROM structures (the card's fsck).

Used by the property and tearing tests after every command, and by the vendor
tools before an image is released. Returns a list of problems; empty means the
card's memory is consistent and the OS's RAM caches agree with it.
"""

from __future__ import annotations

from cardperso.card.dump import is_valid_routine
from cardperso.card.errors import CardError
from cardperso.card.layout import DIR_ENTRY_SIZE, MANUFACTURER_RECORD, unpack_manufacturer
from cardperso.card.memory import Eeprom
from cardperso.card.os import CardOS
from cardperso.card.store import NO_PARENT, Entry, ObjType, SystemState

__all__ = ["check_card", "check_eeprom"]


def check_eeprom(ee: Eeprom) -> list[str]:
    """Check the bytes alone (no running OS needed)."""
    problems: list[str] = []
    info = unpack_manufacturer(ee.read(0, MANUFACTURER_RECORD))
    if info is None:
        return ["manufacturer page invalid"]
    lay = info.layout
    if ee.read(lay.journal, lay.page_size) != bytes(lay.page_size):
        problems.append("journal not empty")
    try:
        SystemState.unpack(ee.read(lay.system, lay.page_size))
    except CardError:
        problems.append("system page corrupt")
    dump = ee.read(lay.dump, lay.dump_pages * lay.page_size)
    if any(dump):
        n = int.from_bytes(dump[5:7], "big")
        if not is_valid_routine(dump[: 7 + n + 4]):
            problems.append("dump area holds garbage")
    entries: dict[int, Entry] = {}
    for i in range(lay.dir_entries):
        raw = ee.read(lay.entry_addr(i), DIR_ENTRY_SIZE)
        try:
            e = Entry.unpack(raw)
        except CardError:
            problems.append(f"entry {i}: bad CRC or type")
            continue
        if e is None:
            if any(raw):
                problems.append(f"entry {i}: free slot not erased")
            continue
        entries[i] = e
    used = bytearray(lay.bitmap_size)
    for i, e in entries.items():
        if e.alloc:
            if e.body < lay.heap or (e.body - lay.heap) % lay.block or e.alloc % lay.block:
                problems.append(f"entry {i}: body not block-aligned in the heap")
                continue
            if e.body + e.alloc > lay.eeprom_size:
                problems.append(f"entry {i}: body past the end")
                continue
            first = (e.body - lay.heap) // lay.block
            for b in range(first, first + e.alloc // lay.block):
                if used[b >> 3] & (0x80 >> (b & 7)):
                    problems.append(f"entry {i}: body overlaps another")
                used[b >> 3] |= 0x80 >> (b & 7)
        need = e.size * e.max_records if e.type == ObjType.EF_LINEAR else e.size
        if need > e.alloc:
            problems.append(f"entry {i}: size {need} exceeds allocation {e.alloc}")
        if e.type == ObjType.EF_LINEAR and e.nrec > e.max_records:
            problems.append(f"entry {i}: more records than the maximum")
        if e.is_file:
            if e.parent == NO_PARENT:
                if e.type != ObjType.DF or e.fid != 0x3F00:
                    problems.append(f"entry {i}: root that is not the MF")
            elif e.parent not in entries or entries[e.parent].type != ObjType.DF:
                problems.append(f"entry {i}: parent {e.parent} is not a DF")
        elif e.type == ObjType.PIN:
            if e.extra[1] > e.extra[0] or e.size != 8:
                problems.append(f"entry {i}: PIN counter or size invalid")
        elif e.type == ObjType.KEY and e.extra[4] > e.extra[3]:
            problems.append(f"entry {i}: key counter invalid")
    if bytes(used) != ee.read(lay.bitmap, lay.bitmap_size):
        problems.append("allocation bitmap does not match the directory")
    roots = [i for i, e in entries.items() if e.is_file and e.parent == NO_PARENT]
    if len(roots) > 1:
        problems.append("more than one MF")
    seen: set[tuple[int, int]] = set()
    for i, e in entries.items():
        if e.is_file:
            key = (e.parent, e.fid)
            if key in seen:
                problems.append(f"entry {i}: FID {e.fid:04X} repeated in its DF")
            seen.add(key)
            # walk up: no cycles
            hops, cur = 0, e
            while cur.parent != NO_PARENT and hops <= lay.dir_entries:
                nxt = entries.get(cur.parent)
                if nxt is None:
                    break
                cur, hops = nxt, hops + 1
            if hops > lay.dir_entries:
                problems.append(f"entry {i}: parent cycle")
        elif e.type in (ObjType.PIN, ObjType.KEY, ObjType.ECKEY):
            key = (0x100 | e.type, e.fid)
            if key in seen:
                problems.append(f"entry {i}: object reference {e.fid} repeated")
            seen.add(key)
    return problems


def check_card(card: CardOS) -> list[str]:
    """Bytes and RAM caches together (for a powered, undamaged card)."""
    problems = check_eeprom(card.eeprom)
    st = card.store
    if st is None or card.damaged or problems:
        return problems
    fresh = type(st)(card.eeprom, st.layout)
    try:
        fresh.reload()
    except CardError:
        return [*problems, "structures unreadable"]
    if fresh.entries != st.entries:
        problems.append("directory cache differs from EEPROM")
    if fresh.bitmap != st.bitmap:
        problems.append("bitmap cache differs from EEPROM")
    if fresh.system != st.system:
        problems.append("system cache differs from EEPROM")
    return problems
