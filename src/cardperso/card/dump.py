"""The dump routine: the card vendor's memory read-out code for golden cards.

A golden card is initialized by logical file commands; then this routine is
loaded into the otherwise unused dump area (LOAD DUMP ROUTINE) and the card's
memory is read out with READ MEMORY, which only the routine implements. The OS
erases the dump area at every power-up and reset, so the routine serves one
session only and a card can never carry it into personalization.

The routine is "code" to the simulated OS: a blob with a header the OS checks
before it will run it (magic, version, length, CRC-32). The vendor ships it.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["ROUTINE_MAGIC", "dump_routine", "is_valid_routine"]

ROUTINE_MAGIC = b"DUMP"
_HDR = struct.Struct(">4sBH")  # magic, version, code length; CRC-32 follows the code
_VERSION = 1
_CODE = bytes(range(256))[:160]  # stands for the routine's machine code


def dump_routine() -> bytes:
    """The vendor's dump routine image, as LOAD DUMP ROUTINE expects it."""
    body = _HDR.pack(ROUTINE_MAGIC, _VERSION, len(_CODE)) + _CODE
    return body + zlib.crc32(body).to_bytes(4, "big")


def is_valid_routine(blob: bytes) -> bool:
    if len(blob) < _HDR.size + 4:
        return False
    magic, version, n = _HDR.unpack_from(blob)
    if magic != ROUTINE_MAGIC or version != _VERSION or len(blob) != _HDR.size + n + 4:
        return False
    return zlib.crc32(blob[:-4]) == int.from_bytes(blob[-4:], "big")
