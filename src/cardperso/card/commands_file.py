"""File-management commands (ISO/IEC 7816-4:2020 §11.1-11.4, ISO/IEC 7816-9 §8):
SELECT, READ/UPDATE BINARY, READ/UPDATE/APPEND RECORD, CREATE/DELETE FILE,
ACTIVATE/DEACTIVATE FILE, TERMINATE DF/EF."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.card.access import Op
from cardperso.card.errors import CardError
from cardperso.card.fcp import (
    LCS_ACTIVATED,
    LCS_DEACTIVATED,
    LCS_TERMINATED,
    build_fcp,
    parse_create,
)
from cardperso.card.store import (
    NO_PARENT,
    PHASE_PERSO_CREATED,
    PHASE_PERSO_WRITTEN,
    Entry,
    Lifecycle,
    ObjType,
)

if TYPE_CHECKING:
    from cardperso.card.os import CardOS

__all__ = ["HANDLERS", "CardWarning"]

MAX_NE = (256, 65536)


class CardWarning(Exception):
    """The command completed; answer ``data`` with warning status ``sw``."""

    def __init__(self, data: bytes, sw: int) -> None:
        super().__init__(f"SW {sw:04X}")
        self.data = data
        self.sw = sw


# -- navigation helpers --------------------------------------------------------
def children(card: CardOS, df: int) -> list[tuple[int, Entry]]:
    return [(i, e) for i, e in card.st.iter_entries() if e.is_file and e.parent == df]


def find_child(card: CardOS, df: int | None, fid: int) -> tuple[int, Entry] | None:
    if df is None:
        return None
    for i, e in children(card, df):
        if e.fid == fid:
            return i, e
    return None


def mf_index(card: CardOS) -> int | None:
    for i, e in card.st.iter_entries():
        if e.type == ObjType.DF and e.parent == NO_PARENT:
            return i
    return None


def df_name(card: CardOS, e: Entry) -> bytes:
    if e.type != ObjType.DF or not e.size:
        return b""
    return card.eeprom.read(e.body, e.size)


def get(card: CardOS, idx: int) -> Entry:
    e = card.st.entry(idx)
    if e is None:
        raise CardError(0x6A82)
    return e


def current_df(card: CardOS) -> int:
    if card.ram.current_df is None:
        raise CardError(0x6A82)
    return card.ram.current_df


def ef_for(card: CardOS, sfi: int) -> tuple[int, Entry]:
    """The EF named by a short EF identifier in the current DF (0 = current EF);
    an SFI reference also selects that EF (7816-4 §7.2.2)."""
    if sfi == 0:
        if card.ram.current_ef is None:
            raise CardError(0x6986)
        i = card.ram.current_ef
        return i, get(card, i)
    df = current_df(card)
    for i, e in children(card, df):
        if e.is_ef and e.sfi == sfi:
            card.ram.current_ef = i
            return i, e
    raise CardError(0x6A82)


def usable(e: Entry) -> None:
    """Deactivated and terminated files refuse use (7816-9 §5, file life cycle)."""
    if e.lcs in (LCS_DEACTIVATED, LCS_TERMINATED):
        raise CardError(0x6985)


def mark_written(card: CardOS, idx: int, e: Entry) -> None:
    """Remember that personalization changed an initialization-time object, so
    depersonalization knows to erase it."""
    if card.st.system.lifecycle != Lifecycle.MANUFACTURED and not e.phase & PHASE_PERSO_WRITTEN:
        e.phase |= PHASE_PERSO_WRITTEN
        card.st.put_entry(idx, e)


# -- SELECT ----------------------------------------------------------------------
def _resolve_fid(card: CardOS, fid: int) -> int:
    mf = mf_index(card)
    if fid == 0x3F00:
        if mf is None:
            raise CardError(0x6A82)
        return mf
    cur = card.ram.current_df
    hit = find_child(card, cur, fid)
    if hit:
        return hit[0]
    if cur is not None:
        e = get(card, cur)
        if e.fid == fid:
            return cur
        if e.parent != NO_PARENT:
            parent = get(card, e.parent)
            if parent.fid == fid:
                return e.parent
            hit = find_child(card, e.parent, fid)
            if hit:
                return hit[0]
    raise CardError(0x6A82)


def _walk(card: CardOS, start: int | None, path: bytes) -> int:
    if not path or len(path) % 2:
        raise CardError(0x6700 if not path else 0x6A80)
    idx = start
    for k in range(0, len(path), 2):
        fid = int.from_bytes(path[k : k + 2], "big")
        if idx is not None and k + 2 < len(path) and get(card, idx).type != ObjType.DF:
            raise CardError(0x6A82)
        hit = find_child(card, idx, fid)
        if hit is None:
            raise CardError(0x6A82)
        idx = hit[0]
    assert idx is not None
    return idx


def select(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p2 & 0x03 or cmd.p2 & 0xF0 or (cmd.p2 & 0x0C) == 0x08:
        raise CardError(0x6A86)  # only "first or only occurrence"; FCI, FCP or nothing
    p1, data = cmd.p1, cmd.data
    if p1 == 0x00:
        if not data:
            mf = mf_index(card)
            if mf is None:
                raise CardError(0x6A82)
            target = mf
        elif len(data) != 2:
            raise CardError(0x6700)
        else:
            target = _resolve_fid(card, int.from_bytes(data, "big"))
    elif p1 in (0x01, 0x02):
        if len(data) != 2:
            raise CardError(0x6700)
        hit = find_child(card, current_df(card), int.from_bytes(data, "big"))
        want_df = p1 == 0x01
        if hit is None or (hit[1].type == ObjType.DF) != want_df:
            raise CardError(0x6A82)
        target = hit[0]
    elif p1 == 0x03:
        if data:
            raise CardError(0x6700)
        cur = get(card, current_df(card))
        if cur.parent == NO_PARENT:
            raise CardError(0x6A82)
        target = cur.parent
    elif p1 == 0x04:
        if not 1 <= len(data) <= 16:
            raise CardError(0x6700)
        found = [
            i
            for i, e in card.st.iter_entries()
            if e.type == ObjType.DF and df_name(card, e) == data
        ]
        if not found:
            raise CardError(0x6A82)
        target = found[0]
    elif p1 in (0x08, 0x09):
        start = mf_index(card) if p1 == 0x08 else current_df(card)
        if start is None:
            raise CardError(0x6A82)
        target = _walk(card, start, data)
    else:
        raise CardError(0x6A86)
    e = get(card, target)
    if e.type == ObjType.DF:
        card.ram.current_df, card.ram.current_ef = target, None
    else:
        card.ram.current_df, card.ram.current_ef = e.parent, target
    resp = b""
    if cmd.p2 & 0x0C != 0x0C:
        fcp = build_fcp(e, df_name(card, e))
        resp = fcp if cmd.p2 & 0x0C == 0x04 else tlv.encode(0x6F, tlv.decode(fcp)[0][1])
    if e.lcs == LCS_DEACTIVATED:
        raise CardWarning(resp, 0x6283)
    if e.lcs == LCS_TERMINATED:
        raise CardWarning(resp, 0x6285)
    return resp


# -- transparent EFs ---------------------------------------------------------------
def _binary_target(card: CardOS, cmd: CommandAPDU) -> tuple[int, Entry, int]:
    if cmd.p1 & 0x80:
        if cmd.p1 & 0x60:
            raise CardError(0x6A86)
        idx, e = ef_for(card, cmd.p1 & 0x1F)
        offset = cmd.p2
    else:
        idx, e = ef_for(card, 0)
        offset = (cmd.p1 << 8) | cmd.p2
    if e.type != ObjType.EF_TRANSPARENT:
        raise CardError(0x6981)
    usable(e)
    return idx, e, offset


def read_binary(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.data:
        raise CardError(0x6700)
    if cmd.le == 0:
        raise CardError(0x6700)
    _, e, offset = _binary_target(card, cmd)
    card.check_access(e, Op.READ)
    if offset > e.size or (offset == e.size and e.size):
        raise CardError(0x6B00)
    avail = e.size - offset
    n = min(cmd.le, avail)
    data = card.eeprom.read(e.body + offset, n)
    if cmd.le > avail and cmd.le not in MAX_NE:
        raise CardWarning(data, 0x6282)
    return data


def update_binary(card: CardOS, cmd: CommandAPDU) -> bytes:
    if not cmd.data or cmd.le:
        raise CardError(0x6700)
    idx, e, offset = _binary_target(card, cmd)
    card.check_access(e, Op.UPDATE)
    if offset >= e.size:
        raise CardError(0x6B00)
    if offset + len(cmd.data) > e.size:
        raise CardError(0x6700)
    st = card.st
    st.begin()
    st.txn.write(e.body + offset, cmd.data)
    mark_written(card, idx, e.copy())
    st.commit()
    return b""


# -- record EFs --------------------------------------------------------------------
def _record_target(card: CardOS, p2: int) -> tuple[int, Entry]:
    sfi = p2 >> 3
    if sfi == 0x1F:
        raise CardError(0x6A86)
    idx, e = ef_for(card, sfi)
    if e.type != ObjType.EF_LINEAR:
        raise CardError(0x6981)
    usable(e)
    return idx, e


def read_record(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0 or cmd.p1 == 0xFF:
        raise CardError(0x6A86)
    if cmd.data or cmd.le == 0:
        raise CardError(0x6700)
    _, e = _record_target(card, cmd.p2)
    card.check_access(e, Op.READ)
    if cmd.p1 > e.nrec:
        raise CardError(0x6A83)
    if cmd.le < e.size and cmd.le not in MAX_NE:
        raise CardError(0x6C00 | e.size)
    record = card.eeprom.read(e.body + (cmd.p1 - 1) * e.size, e.size)
    if cmd.le > e.size and cmd.le not in MAX_NE:
        raise CardWarning(record, 0x6282)  # the record ended before Ne bytes
    return record


def update_record(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0 or cmd.p1 == 0xFF:
        raise CardError(0x6A86)
    if cmd.le:
        raise CardError(0x6700)
    idx, e = _record_target(card, cmd.p2)
    card.check_access(e, Op.UPDATE)
    if len(cmd.data) != e.size:
        raise CardError(0x6700)
    if cmd.p1 > e.nrec:
        raise CardError(0x6A83)
    st = card.st
    st.begin()
    st.txn.write(e.body + (cmd.p1 - 1) * e.size, cmd.data)
    mark_written(card, idx, e.copy())
    st.commit()
    return b""


def append_record(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 != 0 or cmd.p2 & 0x07:
        raise CardError(0x6A86)
    if cmd.le:
        raise CardError(0x6700)
    idx, e = _record_target(card, cmd.p2)
    card.check_access(e, Op.APPEND)
    if len(cmd.data) != e.size:
        raise CardError(0x6700)
    if e.nrec >= e.max_records:
        raise CardError(0x6A84)
    st = card.st
    st.begin()
    st.txn.write(e.body + e.nrec * e.size, cmd.data)
    new = e.copy()
    new.nrec += 1
    if st.system.lifecycle != Lifecycle.MANUFACTURED:
        new.phase |= PHASE_PERSO_WRITTEN
    st.put_entry(idx, new)
    st.commit()
    return b""


# -- CREATE / DELETE -----------------------------------------------------------------
def create_file(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 or cmd.p2:
        raise CardError(0x6A86)
    if not cmd.data or cmd.le:
        raise CardError(0x6700)
    spec = parse_create(cmd.data)
    st = card.st
    mf = mf_index(card)
    if spec.fid == 0x3F00 or mf is None:
        if mf is not None:
            raise CardError(0x6A89)
        if spec.fid != 0x3F00 or spec.type != ObjType.DF:
            raise CardError(0x6A82)  # the MF must come first
        parent = NO_PARENT
    else:
        parent = current_df(card)
        pe = get(card, parent)
        if pe.lcs == LCS_TERMINATED:
            raise CardError(0x6985)
        card.check_access(pe, Op.create_df() if spec.type == ObjType.DF else Op.create_ef())
        if pe.fid == spec.fid or find_child(card, parent, spec.fid):
            raise CardError(0x6A89)
        if spec.sfi and any(e.sfi == spec.sfi for _, e in children(card, parent)):
            raise CardError(0x6A89)
    if spec.df_name and any(
        e.type == ObjType.DF and df_name(card, e) == spec.df_name for _, e in st.iter_entries()
    ):
        raise CardError(0x6A8A)
    if spec.type == ObjType.DF:
        nbytes, size = len(spec.df_name), len(spec.df_name)
    elif spec.type == ObjType.EF_TRANSPARENT:
        nbytes, size = spec.size, spec.size
    else:
        nbytes, size = spec.record_length * spec.max_records, spec.record_length
    slot = st.free_slot()
    st.begin()
    body, alloc = st.allocate(nbytes) if nbytes else (0, 0)
    if alloc:
        # Free space may hold old data: erase it before the entry makes it live.
        card.eeprom.write(body, bytes(alloc))
    if spec.df_name:
        st.txn.write(body, spec.df_name)
    phase = PHASE_PERSO_CREATED if st.system.lifecycle != Lifecycle.MANUFACTURED else 0
    e = Entry(
        spec.type,
        spec.lcs,
        spec.fid,
        parent,
        spec.sfi,
        body,
        alloc,
        size,
        spec.max_records,
        0,
        spec.am,
        spec.sc,
        phase,
    )
    st.put_entry(slot, e)
    st.commit()
    if spec.type == ObjType.DF:
        card.ram.current_df, card.ram.current_ef = slot, None
    else:
        card.ram.current_df, card.ram.current_ef = parent, slot
    return b""


def _target(card: CardOS, cmd: CommandAPDU) -> tuple[int, Entry]:
    """The file a lifecycle/delete command acts on: the FID in the data field (a
    child of the current DF), or the current file when the data field is empty."""
    if cmd.p1 or cmd.p2:
        raise CardError(0x6A86)
    if cmd.le:
        raise CardError(0x6700)
    if cmd.data:
        if len(cmd.data) != 2:
            raise CardError(0x6700)
        hit = find_child(card, current_df(card), int.from_bytes(cmd.data, "big"))
        if hit is None:
            raise CardError(0x6A82)
        return hit
    if card.ram.current_ef is not None:
        return card.ram.current_ef, get(card, card.ram.current_ef)
    idx = current_df(card)
    return idx, get(card, idx)


def descendants(card: CardOS, idx: int) -> list[int]:
    out, todo = [], [idx]
    while todo:
        cur = todo.pop()
        out.append(cur)
        todo.extend(i for i, _ in children(card, cur))
    return out


def _may_delete(card: CardOS, e: Entry) -> None:
    """Either the file's own DELETE condition or its parent's delete-child one."""
    try:
        card.check_access(e, Op.DELETE_SELF)
    except CardError:
        if e.parent == NO_PARENT:
            raise
        card.check_access(get(card, e.parent), Op.delete_child())


def delete_file(card: CardOS, cmd: CommandAPDU) -> bytes:
    idx, e = _target(card, cmd)
    _may_delete(card, e)
    st = card.st
    doomed = descendants(card, idx)
    st.begin()
    for i in doomed:
        d = get(card, i)
        st.release(d.body, d.alloc)
        st.put_entry(i, None)
    st.commit()
    if card.ram.current_ef in doomed:
        card.ram.current_ef = None
    if card.ram.current_df in doomed:
        card.ram.current_df = e.parent if e.parent != NO_PARENT else None
    return b""


def _set_lcs(card: CardOS, cmd: CommandAPDU, op: Op, want: set[ObjType] | None) -> bytes:
    idx, e = _target(card, cmd)
    if want is not None and e.type not in want:
        raise CardError(0x6981)
    if e.lcs == LCS_TERMINATED:
        raise CardError(0x6985)
    card.check_access(e, op)
    new = e.copy()
    new.lcs = {
        Op.ACTIVATE: LCS_ACTIVATED,
        Op.DEACTIVATE: LCS_DEACTIVATED,
        Op.TERMINATE: LCS_TERMINATED,
    }[op]
    st = card.st
    st.begin()
    st.put_entry(idx, new)
    st.commit()
    return b""


def activate(card: CardOS, cmd: CommandAPDU) -> bytes:
    return _set_lcs(card, cmd, Op.ACTIVATE, None)


def deactivate(card: CardOS, cmd: CommandAPDU) -> bytes:
    return _set_lcs(card, cmd, Op.DEACTIVATE, None)


def terminate_df(card: CardOS, cmd: CommandAPDU) -> bytes:
    return _set_lcs(card, cmd, Op.TERMINATE, {ObjType.DF})


def terminate_ef(card: CardOS, cmd: CommandAPDU) -> bytes:
    return _set_lcs(card, cmd, Op.TERMINATE, {ObjType.EF_TRANSPARENT, ObjType.EF_LINEAR})


HANDLERS = {
    (0x00, 0xA4): select,
    (0x00, 0xB0): read_binary,
    (0x00, 0xD6): update_binary,
    (0x00, 0xB2): read_record,
    (0x00, 0xDC): update_record,
    (0x00, 0xE2): append_record,
    (0x00, 0xE0): create_file,
    (0x00, 0xE4): delete_file,
    (0x00, 0x44): activate,
    (0x00, 0x04): deactivate,
    (0x00, 0xE6): terminate_df,
    (0x00, 0xE8): terminate_ef,
}
