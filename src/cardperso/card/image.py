"""The card vendor's offline image builder (the chapter's "simulation" route).

Instead of initializing a golden card by logical commands and dumping it, run the
same logical initialization script on this OS's own model in memory and take the
image ranges (system page, directory, bitmap, heap) from it. Because the model *is*
the OS, the image is byte-identical to a golden card's dump of the same script —
the tests prove it — without a golden card, and so without a card carrying a dump
routine anywhere in the facility.

An image holds structure only: the builder refuses scripts that load keys or make
card-specific secrets (PUT KEY, GENERATE PIN, GENERATE ASYMMETRIC KEY PAIR), since
every card of the run would get the same ones; KD comes per card, after the image.
It is bound to the OS version and the memory layout it was built for, and carries
a SHA-256 over its segments that the writer checks on the card with CHECKSUM MEMORY.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cardperso.apdu import ApduFormatError, parse_command
from cardperso.card.factory import format_eeprom
from cardperso.card.layout import OS_VERSION, Layout
from cardperso.card.os import CardOS
from cardperso.crypto.rand import SeededRandom

__all__ = ["ImageError", "MemoryImage", "build_image"]

_FORBIDDEN = {
    (0x80, 0xD8): "PUT KEY/PUT PIN",
    (0x80, 0xDA): "GENERATE PIN",
    (0x00, 0x47): "GENERATE ASYMMETRIC KEY PAIR",
}
_MAGIC = b"CPIM"
_HDR = struct.Struct(">4sB8sIHBBBBH")  # magic, version, OS, layout (6 fields), segments
_PLACEHOLDER_SERIAL = bytes(8)


class ImageError(ValueError):
    """An image that cannot be built, parsed or used on this card."""


@dataclass(frozen=True, slots=True)
class MemoryImage:
    """Image segments ``(address, bytes)`` for one OS version and layout."""

    os_version: bytes
    layout: Layout
    segments: tuple[tuple[int, bytes], ...]

    @property
    def sha256(self) -> bytes:
        h = hashlib.sha256()
        for addr, data in self.segments:
            h.update(addr.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data)
        return h.digest()

    def to_bytes(self) -> bytes:
        lay = self.layout
        out = bytearray(
            _HDR.pack(
                _MAGIC,
                1,
                self.os_version,
                lay.eeprom_size,
                lay.page_size,
                lay.journal_pages,
                lay.dump_pages,
                lay.dir_entries,
                lay.block,
                len(self.segments),
            )
        )
        for addr, data in self.segments:
            out += addr.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
        return bytes(out + self.sha256)

    @classmethod
    def from_bytes(cls, raw: bytes) -> MemoryImage:
        if len(raw) < _HDR.size + 32:
            raise ImageError("image too short")
        magic, ver, osv, size, ps, jp, dp, de, blk, n = _HDR.unpack_from(raw)
        if magic != _MAGIC or ver != 1:
            raise ImageError("not a cardperso memory image")
        try:
            layout = Layout(size, ps, jp, dp, de, blk)
        except ValueError as e:
            raise ImageError(f"bad layout in image: {e}") from None
        pos, segs = _HDR.size, []
        for _ in range(n):
            if pos + 4 > len(raw) - 32:
                raise ImageError("image truncated")
            addr = int.from_bytes(raw[pos : pos + 2], "big")
            ln = int.from_bytes(raw[pos + 2 : pos + 4], "big")
            segs.append((addr, bytes(raw[pos + 4 : pos + 4 + ln])))
            pos += 4 + ln
        img = cls(osv, layout, tuple(segs))
        if pos != len(raw) - 32 or img.sha256 != raw[-32:]:
            raise ImageError("image checksum does not match")
        return img


def build_image(
    script: Iterable[bytes], *, layout: Layout | None = None, os_version: bytes = OS_VERSION
) -> MemoryImage:
    """Run a logical initialization script on the OS model; return the image."""
    lay = layout or Layout()
    card = CardOS(
        format_eeprom(lay, _PLACEHOLDER_SERIAL, os_version),
        SeededRandom(b"image-builder"),
        os_version=os_version,
    )
    card.power_on()
    for i, apdu in enumerate(script, 1):
        try:
            cmd = parse_command(apdu)
        except ApduFormatError:
            raise ImageError(f"script step {i}: not an APDU") from None
        name = _FORBIDDEN.get((cmd.cla & 0xF0, cmd.ins))
        if name is not None:
            raise ImageError(f"script step {i}: {name} has no place in an image")
        resp = card.transmit(apdu)
        if resp[-2:] != b"\x90\x00":
            raise ImageError(f"script step {i}: card answered {resp[-2:].hex().upper()}")
    return MemoryImage(
        os_version, lay, tuple((a, card.eeprom.read(a, n)) for a, n in lay.image_ranges())
    )
