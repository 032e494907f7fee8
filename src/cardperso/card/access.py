"""Access conditions in the ISO/IEC 7816-4 compact format (tag 8C, §7.4.3).

An access-mode byte (AM) says which operations carry a security-condition byte
(SC); SC bytes follow for AM bits b7..b1, highest first. Our SC byte follows
7816-4 Table 20 - ``00`` always, ``FF`` never, b8 = all conditions (else any one),
b7 = secure messaging, b6 = external authentication, b5 = user authentication -
with one documented deviation: the low nibble, which 7816-4 uses for a security
environment number, names the key (b6) or PIN (b5) reference instead, since this
OS has one fixed security environment.

An AM bit that is absent means "never"; a file created with no 8C at all is open
for every operation ("always").
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ALWAYS",
    "NEVER",
    "Op",
    "decode_compact",
    "encode_compact",
    "sc_key",
    "sc_pin",
]

ALWAYS = 0x00
NEVER = 0xFF
SC_ALL = 0x80
SC_SM = 0x40
SC_KEY = 0x20
SC_PIN = 0x10


class Op(IntEnum):
    """Operations by their AM bit number (bN -> 1 << (N-1)), 7816-4 Tables 18 and 19."""

    READ = 1  # EF: READ BINARY/RECORD           DF: DELETE FILE (child)
    UPDATE = 2  # EF: UPDATE BINARY/RECORD       DF: CREATE FILE (EF)
    APPEND = 3  # EF: WRITE / APPEND RECORD      DF: CREATE FILE (DF)
    DEACTIVATE = 4
    ACTIVATE = 5
    TERMINATE = 6
    DELETE_SELF = 7

    # Same bits under their DF names
    @classmethod
    def delete_child(cls) -> Op:
        return cls.READ

    @classmethod
    def create_ef(cls) -> Op:
        return cls.UPDATE

    @classmethod
    def create_df(cls) -> Op:
        return cls.APPEND


def sc_pin(ref: int) -> int:
    """SC byte: PIN ``ref`` verified."""
    return SC_PIN | (ref & 0x0F)


def sc_key(ref: int) -> int:
    """SC byte: key ``ref`` authenticated."""
    return SC_KEY | (ref & 0x0F)


def encode_compact(am: int, sc: bytes) -> bytes:
    """AM byte followed by the SC bytes of the AM bits that are set (b7 first)."""
    out = bytearray([am])
    for bit in range(7, 0, -1):
        if am & (1 << (bit - 1)):
            out.append(sc[7 - bit])
    return bytes(out)


def decode_compact(value: bytes) -> tuple[int, bytes]:
    """Parse an 8C value into (AM, seven SC bytes for b7..b1); absent bits -> NEVER."""
    if not value:
        raise ValueError("empty compact security attribute")
    am = value[0]
    if am & 0x80:
        raise ValueError("AM b8 (command-description format) is not supported")
    want = bin(am).count("1")
    if len(value) != 1 + want:
        raise ValueError("SC bytes do not match the AM byte")
    sc = bytearray([NEVER] * 7)
    it = iter(value[1:])
    for bit in range(7, 0, -1):
        if am & (1 << (bit - 1)):
            sc[7 - bit] = next(it)
    return am, bytes(sc)


def condition(sc: bytes, op: Op) -> int:
    """The SC byte that guards ``op``."""
    return sc[7 - op.value]
