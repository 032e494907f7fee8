"""A reader slot holding a simulated card, in process.

Elapsed time is the card's modeled time (I/O at the negotiated rate, processing,
EEPROM writes, on-card crypto): what the same session would take on a real
contact interface, not how long Python took.
"""

from __future__ import annotations

from cardperso.card import CardMute, CardOS, CardStock, new_card
from cardperso.card.factory import card_from_memory
from cardperso.errors import ReaderError

__all__ = ["VirtualReader", "stored_card_reader", "virtual_reader", "virtual_readers"]


class VirtualReader:
    """``Reader`` over an in-process :class:`cardperso.card.CardOS`."""

    def __init__(
        self,
        card: CardOS,
        *,
        protocol: int = 1,
        ta1: int | None = None,
        name: str = "Virtual Reader 0",
    ) -> None:
        if protocol not in (0, 1):
            raise ValueError("protocol must be 0 (T=0) or 1 (T=1)")
        self.card = card
        self.protocol = protocol
        self.ta1 = ta1
        self._name = name
        self._start = card.timing.total
        self.atr = b""

    @property
    def name(self) -> str:
        return self._name

    def reset(self) -> bytes:
        """Cold reset, then PPS to the requested protocol and rate (7816-3 §9)."""
        try:
            self.atr = self.card.power_on()
        except CardMute as e:
            raise ReaderError(f"{self._name}: card mute at reset ({e})") from None
        if not self.card.pps(self.protocol, self.ta1):
            raise ReaderError(f"{self._name}: card refused PPS")
        return self.atr

    def transmit(self, apdu: bytes) -> bytes:
        try:
            return self.card.transmit(bytes(apdu))
        except CardMute as e:
            raise ReaderError(f"{self._name}: card mute ({e})") from None

    @property
    def elapsed(self) -> float:
        return self.card.timing.total - self._start

    @property
    def baud(self) -> float:
        return self.card.timing.baud

    def close(self) -> None:
        self.card.power_off()

    def memory(self) -> bytes:
        """The simulated chip's whole EEPROM, as the physical card would carry it off
        the line (keys and PINs included). Simulation only: it lets a simulated card
        be kept between runs (the line's card vault); a real reader has no such call."""
        return bytes(self.card.eeprom.data)

    def __repr__(self) -> str:
        return f"VirtualReader({self._name!r}, T={self.protocol})"


def virtual_reader(
    seed: int | str | None = None,
    *,
    serial: bytes | None = None,
    protocol: int = 1,
    ta1: int | None = None,
    name: str = "Virtual Reader 0",
) -> VirtualReader:
    """A slot with one new blank simulated card in it (the card OS stays behind
    this module: callers above the readers layer never import ``cardperso.card``)."""
    return VirtualReader(new_card(serial, seed), protocol=protocol, ta1=ta1, name=name)


def stored_card_reader(
    memory: bytes,
    seed: int | str | None = None,
    *,
    protocol: int = 1,
    ta1: int | None = None,
    name: str = "Virtual Reader 0",
) -> VirtualReader:
    """A slot with a simulated card whose EEPROM is ``memory`` (a card kept from an
    earlier run, see :meth:`VirtualReader.memory`). ValueError if the bytes are not
    a card's memory."""
    return VirtualReader(card_from_memory(memory, seed), protocol=protocol, ta1=ta1, name=name)


def virtual_readers(
    stock_seed: int | str, count: int, *, protocol: int = 1, ta1: int | None = None
) -> list[VirtualReader]:
    """``count`` slots, each with the next card of one seeded card stock."""
    stock = CardStock(stock_seed)
    return [
        VirtualReader(stock.next_card(), protocol=protocol, ta1=ta1, name=f"Virtual Reader {i}")
        for i in range(count)
    ]
