"""A feeder whose slots are PC/SC readers: the line talks to its cards through pcscd.

Where :class:`~cardperso.line.feeder.SimulatedFeeder` hands a module the simulated
card directly, :class:`PcscFeeder` puts the same card (made by a ``SimulatedFeeder``:
the blank card of that serial, deterministic from the stock seed) into the module's
own vpcd reader slot (:mod:`cardperso.readers.vpcd`) and hands the module a
:class:`~cardperso.readers.pcsc.PcscReader` on that reader: every APDU of the run
crosses pcscd exactly as it would to a card in a real contact station, and the
module's code is the same.

Card changes follow what pcscd can see (:meth:`~cardperso.readers.vpcd.VpcdSlot.change`):
the card that was in the slot is pulled and pcscd must report the reader empty before
the next card goes in, then report the new card present. pcscd polls a vpcd reader
every 0.4 s, so a card change costs about 0.8 s of the slot's time; a card pulled
out mid-command costs one poll more (so that it cannot wedge the reader).

The reader handed to the module reaches the card through pcscd while the card is in
the module's slot. The line's QC station powers each card once more at its own
contact head after the module let go of it; by then the module may have taken its
next card into the slot, and the earlier card is reached in process (as the
simulated line reaches every card): only the encoding modules' contacts are PC/SC
readers here. The handle's PC/SC connection is always closed before its card leaves
the slot.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

from cardperso.errors import ReaderError
from cardperso.line.feeder import DEFAULT_TA1, FaultHook, Feeder, SimulatedFeeder
from cardperso.readers import Reader
from cardperso.readers.pcsc import PcscReader
from cardperso.readers.pcscd import RigSlot
from cardperso.readers.virtual import VirtualReader
from cardperso.readers.vpcd import VpcdSlot

__all__ = ["PcscFeeder"]


class PcscFeeder:
    """Feeds simulated cards of a seeded stock run into vpcd reader slots, one slot per
    line module (the first module to ask gets the first slot, and so on)."""

    def __init__(
        self,
        slots: Sequence[RigSlot],
        stock_seed: str,
        *,
        protocol: int = 1,
        ta1: int | None = DEFAULT_TA1,
        fault: FaultHook | None = None,
        stock: Feeder | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.slots = list(slots)
        self.protocol = protocol
        self.fault = fault
        self.timeout = timeout
        self.stock: Feeder = stock or SimulatedFeeder(stock_seed, ta1=ta1, protocol=protocol)
        """Where the cards come from: a feeder of simulated cards (``VirtualReader``)."""
        self._by_module: dict[str, tuple[VpcdSlot, str]] = {}
        self._contacts: dict[str, _Contact] = {}
        self._lock = threading.Lock()

    def slot(self, module_id: str) -> VpcdSlot:
        """The card side of ``module_id``'s slot (assigned on first use)."""
        return self._assign(module_id)[0]

    def insert(self, serial: str, module_id: str) -> Reader:
        vpcd, reader_name = self._assign(module_id)
        card = self.stock.insert(serial, module_id)
        if not isinstance(card, VirtualReader):
            raise ReaderError(f"{reader_name}: the stock gave no simulated card to serve")
        with self._lock:
            previous = self._contacts.pop(module_id, None)
        if previous is not None:
            previous.leave()  # host handle closed before its card goes (no wedge)
        vpcd.change(card, card.card.atr, reader_name, timeout=self.timeout)
        contact = _Contact(PcscReader(reader_name, protocol=self.protocol), card, vpcd)
        with self._lock:
            self._contacts[module_id] = contact
        reader: Reader = contact
        if self.fault is not None:
            reader = self.fault(module_id, serial, reader)
        return reader

    def close(self) -> None:
        """Take the last card out of every slot."""
        with self._lock:
            slots = [v for v, _ in self._by_module.values()]
            contacts = list(self._contacts.values())
            self._contacts.clear()
        for contact in contacts:
            contact.leave()
        for vpcd in slots:
            vpcd.remove()

    def _assign(self, module_id: str) -> tuple[VpcdSlot, str]:
        with self._lock:
            entry = self._by_module.get(module_id)
            if entry is None:
                n = len(self._by_module)
                if n >= len(self.slots):
                    raise ReaderError(
                        f"module {module_id}: no PC/SC slot left ({len(self.slots)} slots)"
                    )
                rig_slot = self.slots[n]
                entry = (VpcdSlot(rig_slot.port, name=rig_slot.reader), rig_slot.reader)
                self._by_module[module_id] = entry
            return entry


class _Contact:
    """The line's contact with one card: through pcscd while the card is in its
    module's slot; once the module has taken the next card, the card has moved on
    along the transport and a later station's contact head (QC powers the card again
    to check it is the same chip) reaches it in process, as the simulated line does.
    A card does not leave the slot in the middle of a session (reset .. close)."""

    SESSION_WAIT_S = 5.0

    def __init__(self, pcsc: PcscReader, card: VirtualReader, slot: VpcdSlot) -> None:
        self._pcsc = pcsc
        self._card = card
        self._slot = slot
        self._cond = threading.Condition()
        self._in_slot = True
        self._session = False
        self._card_t0 = 0.0

    @property
    def name(self) -> str:
        return self._pcsc.name

    @property
    def elapsed(self) -> float:
        """Measured time through pcscd, plus modeled time at later contact heads."""
        off = 0.0 if self._in_slot else self._card.elapsed - self._card_t0
        return self._pcsc.elapsed + off

    def reset(self) -> bytes:
        with self._cond:
            if self._in_slot:
                self._session = True
                return self._pcsc.reset()
        return self._card.reset()

    def transmit(self, apdu: bytes) -> bytes:
        with self._cond:
            if self._in_slot:
                if not self._slot.occupied:  # our card left: never send to what came next
                    raise ReaderError(f"{self._pcsc.name}: the card served into it has left")
                served = self._slot.apdus
                answer = self._pcsc.transmit(apdu)
                # vpcd takes a card from whoever connects to its port first, on any
                # interface: the command must have reached the card this feeder serves,
                # or another party holds the slot (and would see keys loaded in clear).
                if self._slot.apdus == served:
                    raise ReaderError(
                        f"{self._pcsc.name}: the reader's card is not the card served into "
                        "it (another connection holds the vpcd slot)"
                    )
                return answer
        return self._card.transmit(apdu)

    def close(self) -> None:
        with self._cond:
            if self._in_slot:
                self._session = False
                self._cond.notify_all()
                self._pcsc.close()
                return
        self._card.close()

    def leave(self) -> None:
        """The card leaves the module's slot once its open session (if any) ends: the
        PC/SC connection is closed before the card goes."""
        with self._cond:
            self._cond.wait_for(lambda: not self._session, timeout=self.SESSION_WAIT_S)
            if self._in_slot:
                with contextlib.suppress(ReaderError):
                    self._pcsc.close()
                self._card_t0 = self._card.elapsed
                self._in_slot = False

    def __repr__(self) -> str:
        where = "in its slot" if self._in_slot else "moved on"
        return f"PcscContact({self.name!r}, {where})"
