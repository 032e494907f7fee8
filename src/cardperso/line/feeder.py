"""Card stock and the feeder: which physical card goes into a module's reader slot.

The database knows the stock by chip serial (``stock_cards``); the feeder puts the
card with that serial into a module's slot and hands back the slot as a
:class:`~cardperso.readers.Reader`. On a real line that is a card picked from the
hopper into a contact station; here :class:`SimulatedFeeder` makes the blank
simulated card of that serial (deterministic from the stock seed and the serial,
so a card never used before a crash is the same card after it) and puts it into a
:class:`~cardperso.readers.VirtualReader` at the negotiated rate. With a
:class:`~cardperso.line.vault.CardVault` it inserts the stored card instead when
the vault holds that serial (pre-initialized stock kept between runs), and
:meth:`SimulatedFeeder.shelve` puts a card that left a slot into the vault (the
initialization room's output going to the secure store).

:func:`stock_serials` numbers a simulated stock run: 8-byte serials, a 4-byte run
prefix derived from the seed, then a 4-byte sequence number.

Fault injection (tests, benchmarks): a :data:`FaultHook` sees every card put into a
slot and may return another reader in its place (a broken contact unit, a dead
card, a card whose EEPROM fails); production feeders have none.

:class:`MeteredReader` wraps a slot to count the host thread's CPU time spent
inside the simulated card, so the line can report host CPU per card without the
card's own simulation (a real card computes on its own chip).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cardperso.errors import ReaderError
from cardperso.line.vault import CardVault
from cardperso.readers import Reader
from cardperso.readers.virtual import VirtualReader, stored_card_reader, virtual_reader

__all__ = [
    "DEFAULT_TA1",
    "CpuMeter",
    "FaultHook",
    "Feeder",
    "MeteredReader",
    "Shelf",
    "SimulatedFeeder",
    "stock_serials",
]

DEFAULT_TA1 = 0x96
"""PPS to Fi = 512, Di = 32 (223,200 bit/s at 3.5712 MHz), the fastest the card OS
offers (docs/card-os.md §9.2): personalization machines run cards at their top rate."""

FaultHook = Callable[[str, str, Reader], Reader]
"""(module id, chip serial, the slot with the card) -> the reader the module uses."""


class Feeder(Protocol):
    """Puts the stock card with a given chip serial into a module's slot."""

    def insert(self, serial: str, module_id: str) -> Reader: ...


class Shelf(Protocol):
    """Where cards that leave a slot initialized are kept until a later run feeds them
    (the secure store of pre-initialized stock)."""

    def shelve(self, serial: str) -> None: ...


def stock_serials(seed: str, start: int, count: int) -> list[str]:
    """Serials (upper-case hex, 8 bytes) of cards ``start`` .. ``start+count-1`` of a run."""
    prefix = hashlib.sha256(b"cardperso-line-stock|" + seed.encode()).digest()[:4]
    return [(prefix + n.to_bytes(4, "big")).hex().upper() for n in range(start, start + count)]


class SimulatedFeeder:
    """Simulated cards of a seeded stock run, each in its own virtual slot: the stored
    card when ``vault`` holds its serial, a blank card otherwise."""

    def __init__(
        self,
        stock_seed: str,
        *,
        ta1: int | None = DEFAULT_TA1,
        protocol: int = 1,
        fault: FaultHook | None = None,
        vault: CardVault | None = None,
    ) -> None:
        self.stock_seed = stock_seed
        self.ta1 = ta1
        self.protocol = protocol
        self.fault = fault
        self.vault = vault
        self._slots: dict[str, tuple[str, VirtualReader]] = {}  # module -> its card
        self._lock = threading.Lock()

    def insert(self, serial: str, module_id: str) -> Reader:
        raw = bytes.fromhex(serial)
        seed = f"{self.stock_seed}/{serial}"
        name = f"module {module_id}"
        stored = self.vault.load(serial) if self.vault is not None else None
        if stored is None:
            virtual = virtual_reader(
                seed, serial=raw, protocol=self.protocol, ta1=self.ta1, name=name
            )
        else:
            try:
                virtual = stored_card_reader(
                    stored, seed, protocol=self.protocol, ta1=self.ta1, name=name
                )
            except ValueError:
                raise ReaderError(f"{name}: the vault's card {serial} is unreadable") from None
        if self.vault is not None:
            with self._lock:
                self._slots[module_id] = (serial, virtual)
        reader: Reader = virtual
        if self.fault is not None:
            reader = self.fault(module_id, serial, reader)
        return reader

    def shelve(self, serial: str) -> None:
        """Keep the card with ``serial`` that is in (or just left) a slot in the vault
        (ReaderError without a vault or if no slot holds that card)."""
        virtual: VirtualReader | None = None
        with self._lock:
            for module_id, (held, card) in list(self._slots.items()):
                if held == serial:
                    virtual = card
                    del self._slots[module_id]
                    break
        if self.vault is None or virtual is None:
            raise ReaderError(f"card {serial} cannot be shelved: no vault or not in a slot")
        self.vault.store(serial, virtual.memory())


class CpuMeter:
    """Thread CPU seconds spent inside simulated cards (thread-safe totals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


class MeteredReader:
    """A reader whose calls into the card are timed on the calling thread's CPU clock."""

    def __init__(self, inner: Reader, meter: CpuMeter) -> None:
        self.inner = inner
        self.meter = meter

    @property
    def name(self) -> str:
        return self.inner.name

    def reset(self) -> bytes:
        t0 = time.thread_time()
        try:
            return self.inner.reset()
        finally:
            self.meter.add(time.thread_time() - t0)

    def transmit(self, apdu: bytes) -> bytes:
        t0 = time.thread_time()
        try:
            return self.inner.transmit(apdu)
        finally:
            self.meter.add(time.thread_time() - t0)

    @property
    def elapsed(self) -> float:
        return self.inner.elapsed

    def close(self) -> None:
        self.inner.close()
