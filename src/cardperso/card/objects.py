"""PIN and key objects: card-global security objects addressed by a reference
number 1..15, stored as directory entries whose secret value sits in the heap.

Entry ``extra`` bytes (8):
    PIN   : try limit, tries left, flags (01 transport, 02 PUK), PUK reference,
            minimum length, maximum length
    KEY   : algorithm, usage, version, try limit (0 = unlimited), tries left
    ECKEY : curve (01 = P-256), usage, version
PIN values are kept as ISO 9564-1 format-2 blocks (8 bytes); keys as raw bytes;
an EC key as the 32-byte private scalar followed by the 65-byte public point.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from cardperso.card.errors import CardError
from cardperso.card.store import PHASE_PERSO_CREATED, Entry, Lifecycle, ObjType
from cardperso.crypto.ciphers import AES, TDES, BlockCipher

if TYPE_CHECKING:
    from cardperso.card.os import CardOS

__all__ = [
    "ALGORITHMS",
    "USAGE_ADMIN",
    "USAGE_EXT_AUTH",
    "USAGE_INT_AUTH",
    "USAGE_KEY_AGREEMENT",
    "USAGE_SM",
    "find_object",
    "key_cipher",
    "parse_format2",
    "read_value",
    "store_object",
]

# Key algorithm identifiers -> (cipher family, key length)
ALGORITHMS: dict[int, tuple[str, int]] = {
    0x01: ("TDES", 16),  # 2-key triple DES
    0x02: ("TDES", 24),  # 3-key triple DES
    0x03: ("AES", 16),
    0x05: ("AES", 32),
}
USAGE_EXT_AUTH = 0x01  # the host proves knowledge (EXTERNAL AUTHENTICATE)
USAGE_INT_AUTH = 0x02  # the card proves knowledge (INTERNAL AUTHENTICATE)
USAGE_SM = 0x04  # derive secure-messaging session keys (GENERAL AUTHENTICATE)
USAGE_ADMIN = 0x08  # lifecycle changes and depersonalization after authentication
USAGE_KEY_AGREEMENT = 0x10  # EC keys: ECDH

PIN_TRANSPORT = 0x01
PIN_IS_PUK = 0x02

# indices into Entry.extra
PIN_LIMIT, PIN_LEFT, PIN_FLAGS, PIN_PUK, PIN_MIN, PIN_MAX = range(6)
KEY_ALG, KEY_USAGE, KEY_VERSION, KEY_LIMIT, KEY_LEFT = range(5)


def find_object(card: CardOS, typ: ObjType, ref: int) -> tuple[int, Entry] | None:
    for i, e in card.st.iter_entries():
        if e.type == typ and e.fid == ref:
            return i, e
    return None


def read_value(card: CardOS, e: Entry) -> bytes:
    return card.eeprom.read(e.body, e.size)


def key_cipher(card: CardOS, e: Entry) -> BlockCipher:
    family, _ = ALGORITHMS[e.extra[KEY_ALG]]
    value = read_value(card, e)
    return AES(value) if family == "AES" else TDES(value)


def parse_format2(block: bytes) -> int:
    """Validate an ISO 9564-1 format-2 PIN block (2L, digits, F fill); returns L."""
    if len(block) != 8 or block[0] >> 4 != 2:
        raise CardError(0x6A80)
    n = block[0] & 0x0F
    if not 4 <= n <= 12:
        raise CardError(0x6A80)
    nibbles = block[1:].hex()
    if any(c not in "0123456789" for c in nibbles[:n]) or any(c != "f" for c in nibbles[n:]):
        raise CardError(0x6A80)
    return n


def same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for reference data."""
    return hmac.compare_digest(a, b)


def store_object(
    card: CardOS, typ: ObjType, ref: int, value: bytes, extra: bytes, *, size: int | None = None
) -> None:
    """Create or replace a PIN/key object atomically (in the open transaction)."""
    st = card.st
    hit = find_object(card, typ, ref)
    perso = st.system.lifecycle != Lifecycle.MANUFACTURED
    if hit is not None:
        idx, old = hit
        st.release(old.body, old.alloc)
        phase = old.phase | (0x02 if perso else 0)
    else:
        idx = st.free_slot()
        phase = PHASE_PERSO_CREATED if perso else 0
    body, alloc = st.allocate(len(value))
    st.txn.write(body, value.ljust(alloc, b"\x00"))
    e = Entry(typ, 0x05, ref, 0xFF, 0, body, alloc, size if size is not None else len(value))
    e.phase = phase
    e.extra[: len(extra)] = extra
    st.put_entry(idx, e)
