"""Command builders for the cardperso card OS (docs/card-os.md has the table).

Host-side helpers that return command APDU bytes, so scripts read like the
command table instead of hex. Standard commands follow ISO/IEC 7816-4/-8; the
CLA 80 ones are this OS's documented proprietary commands. No function here
holds a key or PIN beyond building the one APDU it is asked for.
"""

from __future__ import annotations

from cardperso import tlv
from cardperso.apdu import CommandAPDU

__all__ = [
    "ALWAYS",
    "NEVER",
    "ac",
    "fcp_df",
    "fcp_linear",
    "fcp_transparent",
    "format2",
]

ALWAYS = 0x00
NEVER = 0xFF

# Life cycle states (GlobalPlatform values)
MANUFACTURED, INITIALIZED, PERSONALIZED, BLOCKED, TERMINATED = 0x01, 0x07, 0x0F, 0x7F, 0xFF
# Key algorithms and usages
ALG_TDES2, ALG_TDES3, ALG_AES128, ALG_AES256 = 0x01, 0x02, 0x03, 0x05
USE_EXT_AUTH, USE_INT_AUTH, USE_SM, USE_ADMIN, USE_KEY_AGREEMENT = 0x01, 0x02, 0x04, 0x08, 0x10


def _apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()


def pin_sc(ref: int) -> int:
    """Security condition: PIN ``ref`` verified."""
    return 0x10 | ref


def key_sc(ref: int) -> int:
    """Security condition: key ``ref`` authenticated."""
    return 0x20 | ref


SM_SC = 0x40  # security condition: command under secure messaging


def ac(
    read: int = ALWAYS,
    update: int = ALWAYS,
    append: int = ALWAYS,
    deactivate: int = ALWAYS,
    activate: int = ALWAYS,
    terminate: int = ALWAYS,
    delete: int = ALWAYS,
) -> bytes:
    """Compact security attributes (7816-4 tag 8C value) with every AM bit set.
    For a DF: read = delete child, update = create EF, append = create DF."""
    return bytes([0x7F, delete, terminate, activate, deactivate, append, update, read])


def fcp_df(fid: int, name: bytes = b"", sec: bytes | None = None) -> bytes:
    parts = [tlv.encode(0x82, b"\x38"), tlv.encode(0x83, fid.to_bytes(2, "big"))]
    if name:
        parts.append(tlv.encode(0x84, name))
    if sec is not None:
        parts.append(tlv.encode(0x8C, sec))
    return tlv.encode(0x62, parts)


def fcp_transparent(fid: int, size: int, sfi: int = 0, sec: bytes | None = None) -> bytes:
    parts = [
        tlv.encode(0x80, size.to_bytes(2, "big")),
        tlv.encode(0x82, b"\x01"),
        tlv.encode(0x83, fid.to_bytes(2, "big")),
    ]
    if sfi:
        parts.append(tlv.encode(0x88, bytes([sfi << 3])))
    if sec is not None:
        parts.append(tlv.encode(0x8C, sec))
    return tlv.encode(0x62, parts)


def fcp_linear(
    fid: int, record_length: int, records: int, sfi: int = 0, sec: bytes | None = None
) -> bytes:
    parts = [
        tlv.encode(0x82, bytes([0x02, 0x21, 0x00, record_length, records])),
        tlv.encode(0x83, fid.to_bytes(2, "big")),
    ]
    if sfi:
        parts.append(tlv.encode(0x88, bytes([sfi << 3])))
    if sec is not None:
        parts.append(tlv.encode(0x8C, sec))
    return tlv.encode(0x62, parts)


def format2(pin: str) -> bytes:
    """ISO 9564-1 format-2 PIN block: the plaintext form VERIFY carries."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("PIN must be 4 to 12 digits")
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


# -- file commands ---------------------------------------------------------------
def create_file(fcp: bytes) -> bytes:
    return _apdu(0x00, 0xE0, 0x00, 0x00, fcp)


def select_mf() -> bytes:
    return _apdu(0x00, 0xA4, 0x00, 0x0C)


def select_fid(fid: int, p2: int = 0x0C) -> bytes:
    return _apdu(0x00, 0xA4, 0x00, p2, fid.to_bytes(2, "big"), 256 if p2 != 0x0C else 0)


def select_path(*fids: int, p2: int = 0x0C) -> bytes:
    path = b"".join(f.to_bytes(2, "big") for f in fids)
    return _apdu(0x00, 0xA4, 0x08, p2, path, 256 if p2 != 0x0C else 0)


def select_name(name: bytes, p2: int = 0x0C) -> bytes:
    return _apdu(0x00, 0xA4, 0x04, p2, name, 256 if p2 != 0x0C else 0)


def read_binary(offset: int = 0, le: int = 256, sfi: int = 0) -> bytes:
    if sfi:
        return _apdu(0x00, 0xB0, 0x80 | sfi, offset, le=le)
    return _apdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=le)


def update_binary(data: bytes, offset: int = 0, sfi: int = 0) -> bytes:
    if sfi:
        return _apdu(0x00, 0xD6, 0x80 | sfi, offset, data)
    return _apdu(0x00, 0xD6, offset >> 8, offset & 0xFF, data)


def read_record(number: int, sfi: int = 0, le: int = 256) -> bytes:
    return _apdu(0x00, 0xB2, number, (sfi << 3) | 0x04, le=le)


def update_record(number: int, data: bytes, sfi: int = 0) -> bytes:
    return _apdu(0x00, 0xDC, number, (sfi << 3) | 0x04, data)


def append_record(data: bytes, sfi: int = 0) -> bytes:
    return _apdu(0x00, 0xE2, 0x00, sfi << 3, data)


def delete_file(fid: int | None = None) -> bytes:
    return _apdu(0x00, 0xE4, 0, 0, fid.to_bytes(2, "big") if fid is not None else b"")


def activate(fid: int | None = None) -> bytes:
    return _apdu(0x00, 0x44, 0, 0, fid.to_bytes(2, "big") if fid is not None else b"")


def deactivate(fid: int | None = None) -> bytes:
    return _apdu(0x00, 0x04, 0, 0, fid.to_bytes(2, "big") if fid is not None else b"")


def terminate_ef(fid: int | None = None) -> bytes:
    return _apdu(0x00, 0xE8, 0, 0, fid.to_bytes(2, "big") if fid is not None else b"")


def terminate_df(fid: int | None = None) -> bytes:
    return _apdu(0x00, 0xE6, 0, 0, fid.to_bytes(2, "big") if fid is not None else b"")


# -- security commands -------------------------------------------------------------
def verify(ref: int, pin_block: bytes = b"") -> bytes:
    return _apdu(0x00, 0x20, 0x00, 0x80 | ref, pin_block)


def change_reference_data(ref: int, old_block: bytes, new_block: bytes) -> bytes:
    return _apdu(0x00, 0x24, 0x00, 0x80 | ref, old_block + new_block)


def reset_retry_counter(ref: int, puk_block: bytes, new_block: bytes = b"") -> bytes:
    return _apdu(0x00, 0x2C, 0x00 if new_block else 0x01, 0x80 | ref, puk_block + new_block)


def get_challenge(n: int = 8) -> bytes:
    return _apdu(0x00, 0x84, 0x00, 0x00, le=n)


def external_authenticate(ref: int, cryptogram: bytes) -> bytes:
    return _apdu(0x00, 0x82, 0x00, 0x80 | ref, cryptogram)


def internal_authenticate(ref: int, challenge: bytes) -> bytes:
    return _apdu(0x00, 0x88, 0x00, 0x80 | ref, challenge, 256)


def general_authenticate_1(ref: int, host_random: bytes) -> bytes:
    return _apdu(0x00, 0x86, 0x00, ref, tlv.encode(0x7C, tlv.encode(0x81, host_random)), 256)


def general_authenticate_2(ref: int, host_cryptogram: bytes) -> bytes:
    return _apdu(0x00, 0x86, 0x00, ref, tlv.encode(0x7C, tlv.encode(0x84, host_cryptogram)))


def general_authenticate_ecdh(ref: int, host_public: bytes) -> bytes:
    """Key agreement with EC key ``ref``: ``7C{80 host ephemeral point}`` (docs/card-os.md
    §8.3). The card takes it only under secure messaging: wrap it, never send it plain."""
    return _apdu(0x00, 0x86, 0x00, ref, tlv.encode(0x7C, tlv.encode(0x80, host_public)), 256)


def generate_key_pair(ref: int, usage: int | None = None) -> bytes:
    data = tlv.encode(0x81, bytes([usage])) if usage is not None else b""
    return _apdu(0x00, 0x47, 0x80, ref, data, 256)


def read_public_key(ref: int) -> bytes:
    return _apdu(0x00, 0x47, 0x81, ref, le=256)


def get_data(tag: int) -> bytes:
    return _apdu(0x00, 0xCA, tag >> 8, tag & 0xFF, le=256)


# -- proprietary (CLA 80) ----------------------------------------------------------
def put_key(
    ref: int, alg: int, usage: int, value: bytes, version: int = 1, tries: int = 0
) -> bytes:
    data = b"".join(
        [
            tlv.encode(0x80, bytes([alg])),
            tlv.encode(0x81, bytes([usage])),
            tlv.encode(0x82, bytes([version])),
            tlv.encode(0x83, bytes([tries])),
            tlv.encode(0x8F, value),
        ]
    )
    return _apdu(0x80, 0xD8, 0x00, ref, data)


def put_pin(
    ref: int,
    pin_block: bytes,
    tries: int = 3,
    puk_ref: int = 0,
    transport: bool = False,
    is_puk: bool = False,
    min_len: int = 4,
    max_len: int = 12,
) -> bytes:
    flags = (0x01 if transport else 0) | (0x02 if is_puk else 0)
    data = b"".join(
        [
            tlv.encode(0x80, bytes([tries])),
            tlv.encode(0x81, bytes([puk_ref])),
            tlv.encode(0x82, bytes([flags])),
            tlv.encode(0x83, bytes([min_len])),
            tlv.encode(0x84, bytes([max_len])),
            tlv.encode(0x8F, pin_block),
        ]
    )
    return _apdu(0x80, 0xD8, 0x01, ref, data)


def generate_pin(
    ref: int,
    length: int = 4,
    tries: int = 3,
    puk_ref: int = 0,
    min_len: int = 4,
    max_len: int = 12,
) -> bytes:
    """GENERATE PIN: send it under secure messaging only (the card refuses it plain)."""
    data = b"".join(
        [
            tlv.encode(0x80, bytes([length])),
            tlv.encode(0x81, bytes([tries])),
            tlv.encode(0x82, bytes([puk_ref])),
            tlv.encode(0x83, bytes([min_len])),
            tlv.encode(0x84, bytes([max_len])),
        ]
    )
    return _apdu(0x80, 0xDA, 0x00, ref, data, 256)


def set_lifecycle(state: int) -> bytes:
    return _apdu(0x80, 0xF0, state, 0x00)


def write_memory(addr: int, data: bytes) -> bytes:
    return _apdu(0x80, 0xD0, addr >> 8, addr & 0xFF, data)


def load_dump_routine(routine: bytes) -> bytes:
    return _apdu(0x80, 0xD2, 0x00, 0x00, routine)


def read_memory(addr: int, n: int = 256) -> bytes:
    return _apdu(0x80, 0xB0, addr >> 8, addr & 0xFF, le=n)


def checksum_memory(addr: int, n: int) -> bytes:
    return _apdu(0x80, 0xB4, addr >> 8, addr & 0xFF, n.to_bytes(2, "big"), 32)


def depersonalize() -> bytes:
    return _apdu(0x80, 0xEE, 0x00, 0x00)
