"""The card-stock factory: what the chip and card manufacturers deliver.

Makes blank cards - EEPROM formatted with the manufacturer page (layout, OS
version, a unique chip serial), an unblown lock fuse, life cycle MANUFACTURED
and nothing else - deterministically from a seed, so tests and benchmarks can
ask for "the same 10,000 cards" again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cardperso.card.layout import (
    MANUFACTURER_RECORD,
    OS_VERSION,
    Layout,
    ManufacturerInfo,
    pack_manufacturer,
    unpack_manufacturer,
)
from cardperso.card.memory import Eeprom
from cardperso.card.os import CardOS
from cardperso.card.store import SystemState
from cardperso.card.timing import TimingParams
from cardperso.crypto.rand import RandomSource, SeededRandom, SystemRandom

__all__ = ["CardStock", "card_from_memory", "format_eeprom", "new_card"]

FAB_DATE = bytes.fromhex("20260101")


def format_eeprom(layout: Layout, serial: bytes, os_version: bytes = OS_VERSION) -> Eeprom:
    """A freshly manufactured EEPROM image for one chip."""
    if len(serial) != 8:
        raise ValueError("chip serial must be 8 bytes")
    if len(os_version) != 8:
        raise ValueError("OS version must be 8 bytes")
    ee = Eeprom(layout.eeprom_size, layout.page_size)
    ee.write(0, pack_manufacturer(ManufacturerInfo(layout, os_version, serial, FAB_DATE)))
    ee.write(layout.system, SystemState().pack(layout.page_size))
    ee.page_writes = 0
    ee.take_cost_pages()
    return ee


def new_card(
    serial: bytes | None = None,
    seed: int | bytes | str | None = None,
    *,
    layout: Layout | None = None,
    os_version: bytes = OS_VERSION,
    timing: TimingParams | None = None,
) -> CardOS:
    """One blank card (unpowered). Without a seed it uses the system RNG."""
    rng: RandomSource = SeededRandom(seed) if seed is not None else SystemRandom()
    if serial is None:
        serial = rng.random_bytes(8)
    card_rng = (
        SeededRandom(b"card-trng|" + serial + str(seed).encode())
        if seed is not None
        else SystemRandom()
    )
    ee = format_eeprom(layout or Layout(), serial, os_version)
    return CardOS(ee, card_rng, timing, os_version)


def card_from_memory(
    memory: bytes,
    seed: int | bytes | str | None = None,
    *,
    timing: TimingParams | None = None,
) -> CardOS:
    """A card (unpowered) whose EEPROM holds ``memory``: a card taken off the shelf.

    The simulation's stand-in for a physical card that was initialized once and kept
    (the line's card vault): its layout, ROM mask (OS version) and chip serial are
    read from the manufacturer page the bytes carry, exactly as the chip would know
    them. The card's own random source is seeded as :func:`new_card` seeds it, from
    the serial and ``seed``. ValueError if the bytes are not a card's EEPROM.
    """
    info = unpack_manufacturer(bytes(memory[:MANUFACTURER_RECORD]))
    if info is None:
        raise ValueError("not a card's memory: no valid manufacturer page")
    lay = info.layout
    if len(memory) != lay.eeprom_size:
        raise ValueError("the memory's size differs from its manufacturer page's layout")
    ee = Eeprom(lay.eeprom_size, lay.page_size)
    ee.data[:] = memory
    card_rng: RandomSource = (
        SeededRandom(b"card-trng|" + info.chip_serial + str(seed).encode())
        if seed is not None
        else SystemRandom()
    )
    return CardOS(ee, card_rng, timing, info.os_version)


class CardStock:
    """A run of blank cards with unique serials: a 4-byte run prefix derived from
    the seed, then a 4-byte sequence number."""

    def __init__(
        self,
        seed: int | bytes | str,
        *,
        layout: Layout | None = None,
        os_version: bytes = OS_VERSION,
        timing: TimingParams | None = None,
    ) -> None:
        self.seed = str(seed)
        self.prefix = hashlib.sha256(b"card-stock|" + self.seed.encode()).digest()[:4]
        self.layout = layout or Layout()
        self.os_version = os_version
        self.timing = timing
        self.issued = 0

    def serial(self, n: int) -> bytes:
        return self.prefix + n.to_bytes(4, "big")

    def next_card(self) -> CardOS:
        n = self.issued
        self.issued += 1
        return new_card(
            self.serial(n),
            f"{self.seed}/{n}",
            layout=self.layout,
            os_version=self.os_version,
            timing=self.timing,
        )

    def take(self, count: int) -> list[CardOS]:
        return [self.next_card() for _ in range(count)]

    def __iter__(self) -> Iterator[CardOS]:
        while True:
            yield self.next_card()
