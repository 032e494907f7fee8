"""The Reader contract: what every :class:`~cardperso.readers.Reader` must do, and the
kits that put a fresh simulated card behind each implementation.

- :class:`VirtualKit`: the card in process (``VirtualReader``);
- :class:`PcscKit`: the same card served into a vpcd slot of this process's private
  pcscd (:mod:`readers.pcsc_rig`) and reached with ``PcscReader``: every APDU crosses
  pcscd.

A kit's ``pull`` makes the card vanish from its slot: the next command gets no answer
and a reset finds no card (for the virtual slot: the card stops answering, even to a
reset; for vpcd: the card's connection closes when that command arrives).
"""

from __future__ import annotations

import itertools
from typing import Protocol

from cardperso.card import CardMute
from cardperso.readers import Reader, cos
from cardperso.readers.pcsc import PcscReader
from cardperso.readers.pcscd import RigSlot
from cardperso.readers.virtual import VirtualReader, virtual_reader
from cardperso.readers.vpcd import VpcdSlot

_serials = itertools.count(1)


def _card(protocol: int, name: str) -> VirtualReader:
    n = next(_serials)
    return virtual_reader(
        f"contract/{n}", serial=b"CT" + n.to_bytes(6, "big"), protocol=protocol, name=name
    )


class Kit(Protocol):
    kind: str

    def fresh(self, protocol: int) -> Reader:
        """A slot with a new blank card in it (not yet reset), talking T=``protocol``."""
        ...

    def pull(self, reader: Reader) -> None:
        """The card leaves the slot before it answers the next command."""
        ...


class VirtualKit:
    kind = "virtual"

    def fresh(self, protocol: int) -> Reader:
        return _card(protocol, "Virtual Reader 0")

    def pull(self, reader: Reader) -> None:
        assert isinstance(reader, VirtualReader)
        card = reader.card

        def no_card() -> bytes:
            raise CardMute("no card in the slot")

        card.power_off()
        card.power_on = no_card  # type: ignore[method-assign]


class PcscKit:
    """One vpcd slot per protocol; each ``fresh`` swaps a new card in (about 0.8 s)."""

    kind = "pcsc"

    def __init__(self, slots: list[RigSlot]) -> None:
        self.slots = {
            p: (VpcdSlot(s.port, name=s.reader), s.reader)
            for p, s in zip((1, 0), slots, strict=True)
        }
        self.readers: dict[int, PcscReader] = {}

    def fresh(self, protocol: int) -> Reader:
        old = self.readers.pop(protocol, None)
        if old is not None:
            old.close()  # never leave a host handle on a card about to go (see vpcd notes)
        vpcd, name = self.slots[protocol]
        card = _card(protocol, name)
        vpcd.change(card, card.card.atr, name)
        reader = PcscReader(name, protocol=protocol)
        self.readers[protocol] = reader
        return reader

    def slot_of(self, reader: Reader) -> VpcdSlot:
        for vpcd, name in self.slots.values():
            if name == reader.name:
                return vpcd
        raise KeyError(reader.name)

    def pull(self, reader: Reader) -> None:
        self.slot_of(reader).pull_after(1)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        for vpcd, _ in self.slots.values():
            vpcd.remove()


def tree(reader: Reader, *, big: bool = True) -> None:
    """MF, a transparent EF 0101 (600 bytes, SFI 1), a linear EF 0102 (3 records of
    20 bytes) and an AES key for INTERNAL AUTHENTICATE; ``big`` writes the EF's 600
    bytes in one extended command (T=1 only), else 200 bytes in a short one."""
    data = bytes(range(200)) * 3 if big else bytes(range(200))
    for apdu in [
        cos.create_file(cos.fcp_df(0x3F00)),
        cos.create_file(cos.fcp_transparent(0x0101, 600, sfi=1)),
        cos.update_binary(data),
        cos.select_mf(),
        cos.create_file(cos.fcp_linear(0x0102, 20, 3, sfi=2)),
        cos.append_record(bytes(range(20, 40))),
        cos.select_mf(),
        cos.put_key(1, cos.ALG_AES128, cos.USE_INT_AUTH, bytes(16)),
    ]:
        assert reader.transmit(apdu)[-2:] == b"\x90\x00", apdu.hex()
