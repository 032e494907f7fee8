"""BER-TLV as smart cards use it (ISO/IEC 7816-4:2020 §6.3, coding after ISO/IEC 8825-1).

Tags are kept as integers of their full encoding (``0x62``, ``0x9F7F``, ``0x7F49``)
so they read like the tables in the standards. Lengths use the short form below
128 and the long forms ``81 xx`` / ``82 xx xx`` above (7816-4 allows up to 65,535
here). Parsing never raises anything but :class:`TlvError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["TlvError", "decode", "encode", "encode_length", "find", "iter_tlv", "to_dict"]


class TlvError(ValueError):
    """Malformed BER-TLV data."""


def encode_length(n: int) -> bytes:
    """Definite-length encoding (ISO/IEC 8825-1 §8.1.3)."""
    if n < 0 or n > 0xFFFF:
        raise TlvError("TLV length out of range")
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def _tag_bytes(tag: int) -> bytes:
    if tag < 0:
        raise TlvError("negative tag")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode(tag: int, value: bytes | Iterable[bytes]) -> bytes:
    """One TLV; ``value`` may be a list of already-encoded children (a constructed DO)."""
    body = value if isinstance(value, bytes | bytearray) else b"".join(value)
    return _tag_bytes(tag) + encode_length(len(body)) + bytes(body)


def iter_tlv(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(tag, value)`` for each data object at this level; 00/FF padding is skipped."""
    i, n = 0, len(data)
    while i < n:
        first = data[i]
        if first in (0x00, 0xFF):  # inter-object padding (7816-4 §6.3)
            i += 1
            continue
        start = i
        i += 1
        if first & 0x1F == 0x1F:  # multi-byte tag number
            while True:
                if i >= n:
                    raise TlvError("truncated tag")
                b = data[i]
                i += 1
                if not b & 0x80:
                    break
                if i - start > 4:
                    raise TlvError("tag too long")
        tag = int.from_bytes(data[start:i], "big")
        if i >= n:
            raise TlvError("missing length")
        ln = data[i]
        i += 1
        if ln & 0x80:
            k = ln & 0x7F
            if k == 0 or k > 2 or i + k > n:
                raise TlvError("bad length field")
            ln = int.from_bytes(data[i : i + k], "big")
            i += k
        if i + ln > n:
            raise TlvError("value runs past the end")
        yield tag, bytes(data[i : i + ln])
        i += ln


def decode(data: bytes) -> list[tuple[int, bytes]]:
    """All data objects at this level, in order."""
    return list(iter_tlv(data))


def to_dict(data: bytes) -> dict[int, bytes]:
    """Data objects at this level by tag; a repeated tag is an error."""
    out: dict[int, bytes] = {}
    for tag, value in iter_tlv(data):
        if tag in out:
            raise TlvError(f"tag {tag:X} repeated")
        out[tag] = value
    return out


def find(data: bytes, tag: int) -> bytes | None:
    """Value of the first object with ``tag`` at this level, or None."""
    for t, v in iter_tlv(data):
        if t == tag:
            return v
    return None
