"""File control parameters (FCP, tag 62; ISO/IEC 7816-4:2020 §7.4, Table 12).

Used both ways: CREATE FILE carries an FCP template describing the new file, and
SELECT answers with one. Tags used: 80 (data size), 82 (file descriptor: 38 DF,
01 transparent EF, 02 21 <max record size, 2 bytes> <records> linear fixed EF),
83 (FID), 84 (DF name), 88 (short EF identifier, SFI in b8-b4), 8A (life cycle
status), 8C (compact security attributes, see :mod:`access`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cardperso import tlv
from cardperso.card import access
from cardperso.card.errors import CardError
from cardperso.card.store import Entry, ObjType

__all__ = ["FileSpec", "build_fcp", "parse_create"]

FDB_DF = 0x38
FDB_TRANSPARENT = 0x01
FDB_LINEAR_FIXED = 0x02
LCS_CREATION = 0x01
LCS_INITIALISATION = 0x03
LCS_ACTIVATED = 0x05
LCS_DEACTIVATED = 0x04
LCS_TERMINATED = 0x0C
_ALLOWED_CREATE_LCS = (LCS_CREATION, LCS_INITIALISATION, LCS_ACTIVATED, LCS_DEACTIVATED)


@dataclass(slots=True)
class FileSpec:
    """A new file as CREATE FILE describes it."""

    type: ObjType
    fid: int
    size: int = 0  # transparent: bytes
    record_length: int = 0
    max_records: int = 0
    df_name: bytes = b""
    sfi: int = 0
    lcs: int = LCS_ACTIVATED
    am: int = 0x7F
    sc: bytes = bytes(7)  # all ALWAYS when no 8C is given


def parse_create(data: bytes) -> FileSpec:
    """Validate a CREATE FILE data field; any defect is 6A80 (7816-4 §11.2.2)."""
    try:
        outer = tlv.decode(data)
        if len(outer) != 1 or outer[0][0] != 0x62:
            raise CardError(0x6A80)
        d = tlv.to_dict(outer[0][1])
    except tlv.TlvError:
        raise CardError(0x6A80) from None
    fdb = d.get(0x82)
    fid_raw = d.get(0x83)
    if fdb is None or fid_raw is None or len(fid_raw) != 2:
        raise CardError(0x6A80)
    fid = int.from_bytes(fid_raw, "big")
    if fid in (0x0000, 0xFFFF, 0x3FFF):  # reserved FIDs (7816-4 §7.1.1)
        raise CardError(0x6A80)
    if fdb[0] == FDB_DF and len(fdb) == 1:
        spec = FileSpec(ObjType.DF, fid)
        name = d.get(0x84, b"")
        if len(name) > 16:
            raise CardError(0x6A80)
        spec.df_name = name
    elif fdb[0] == FDB_TRANSPARENT and len(fdb) == 1:
        size = d.get(0x80)
        if size is None or len(size) not in (1, 2) or fid == 0x3F00:
            raise CardError(0x6A80)
        spec = FileSpec(ObjType.EF_TRANSPARENT, fid, size=int.from_bytes(size, "big"))
        if spec.size == 0:
            raise CardError(0x6A80)
    elif fdb[0] == FDB_LINEAR_FIXED and len(fdb) == 5 and fdb[1] == 0x21:
        reclen = int.from_bytes(fdb[2:4], "big")
        nrec = fdb[4]
        if not 1 <= reclen <= 255 or not 1 <= nrec <= 254 or fid == 0x3F00:
            raise CardError(0x6A80)
        spec = FileSpec(ObjType.EF_LINEAR, fid, record_length=reclen, max_records=nrec)
    else:
        raise CardError(0x6A80)
    if 0x84 in d and spec.type != ObjType.DF:
        raise CardError(0x6A80)
    if 0x88 in d:
        v = d[0x88]
        if spec.type == ObjType.DF or len(v) != 1 or v[0] & 0x07 or not 1 <= v[0] >> 3 <= 30:
            raise CardError(0x6A80)
        spec.sfi = v[0] >> 3
    if 0x8A in d:
        v = d[0x8A]
        if len(v) != 1 or v[0] not in _ALLOWED_CREATE_LCS:
            raise CardError(0x6A80)
        spec.lcs = v[0]
    if 0x8C in d:
        try:
            spec.am, spec.sc = access.decode_compact(d[0x8C])
        except ValueError:
            raise CardError(0x6A80) from None
    return spec


def build_fcp(e: Entry, df_name: bytes = b"") -> bytes:
    """The FCP template (62) returned by SELECT for entry ``e``."""
    parts: list[bytes] = []
    if e.type == ObjType.DF:
        parts.append(tlv.encode(0x82, bytes([FDB_DF])))
    elif e.type == ObjType.EF_TRANSPARENT:
        parts.append(tlv.encode(0x80, e.size.to_bytes(2, "big")))
        parts.append(tlv.encode(0x82, bytes([FDB_TRANSPARENT])))
    else:
        parts.append(tlv.encode(0x80, (e.size * e.max_records).to_bytes(2, "big")))
        parts.append(tlv.encode(0x82, bytes([FDB_LINEAR_FIXED, 0x21, 0, e.size, e.max_records])))
    parts.append(tlv.encode(0x83, e.fid.to_bytes(2, "big")))
    if df_name:
        parts.append(tlv.encode(0x84, df_name))
    if e.sfi:
        parts.append(tlv.encode(0x88, bytes([e.sfi << 3])))
    parts.append(tlv.encode(0x8A, bytes([e.lcs])))
    parts.append(tlv.encode(0x8C, access.encode_compact(e.am, e.sc)))
    return tlv.encode(0x62, parts)
