"""A compact set of value digests for duplicate detection in very large batches.

Python's ``set`` of ``bytes`` costs about 100 bytes per entry; a batch of a million
cards would spend 100 MB just remembering which PANs it has seen. This set keeps
each entry as a 20-byte slot in one ``bytearray`` - the first 16 bytes of a
SHA-256 digest and the 4-byte line number where the value first appeared - with
linear probing and a load factor kept between 1/3 and 2/3: 30 to 60 bytes per
entry. A 128-bit digest makes an accidental collision (a false "duplicate") about
n^2 / 2^129 likely: 1.5e-27 for a million values.

The clear values are never stored; the digests are salted with a random key
per set, so the table cannot be compared across batches or searched by guessing.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["DigestSet"]

_SLOT = 20
_DIGEST = 16
_EMPTY = bytes(_DIGEST)


class DigestSet:
    """Remember (field, value) digests with the line of their first appearance."""

    def __init__(self, capacity: int = 1024, salt: bytes | None = None) -> None:
        cap = 16
        while cap < capacity:
            cap *= 2
        self._cap = cap
        self._table = bytearray(cap * _SLOT)
        self._n = 0
        self._salt = salt if salt is not None else os.urandom(16)

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the table (the only per-record state of a batch scan)."""
        return len(self._table)

    def digest(self, field: str, value: str) -> bytes:
        d = hashlib.sha256(
            self._salt + field.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        ).digest()[:_DIGEST]
        return d if d != _EMPTY else b"\x01" + d[1:]

    def add(self, field: str, value: str, line: int) -> int | None:
        """Insert; return None if new, else the line where the value was first seen."""
        if (self._n + 1) * 3 > self._cap * 2:
            self._grow()
        return self._insert(self.digest(field, value), line)

    def _insert(self, d: bytes, line: int) -> int | None:
        table, mask = self._table, self._cap - 1
        i = int.from_bytes(d[:8], "little") & mask
        while True:
            off = i * _SLOT
            slot = table[off : off + _DIGEST]
            if slot == _EMPTY:
                table[off : off + _DIGEST] = d
                table[off + _DIGEST : off + _SLOT] = line.to_bytes(4, "little")
                self._n += 1
                return None
            if slot == d:
                return int.from_bytes(table[off + _DIGEST : off + _SLOT], "little")
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._cap *= 2
        self._table = bytearray(self._cap * _SLOT)
        self._n = 0
        mv = memoryview(old)
        for off in range(0, len(old), _SLOT):
            d = bytes(mv[off : off + _DIGEST])
            if d != _EMPTY:
                self._insert(d, int.from_bytes(mv[off + _DIGEST : off + _SLOT], "little"))
