"""The host side of the chip interface: one small Reader protocol.

Everything above this package reaches cards only through a :class:`Reader`, so a
real card in a PC/SC reader can take the simulated card's place. ``transmit``
is raw (bytes in, response data + SW1 SW2 out); :func:`exchange` adds the
T=0 conveniences every host needs (61xx -> GET RESPONSE, 6Cxx -> resend with
the right Le, ISO/IEC 7816-3 §10.3 / 7816-4 §5.6).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cardperso.apdu import CommandAPDU, ResponseAPDU, parse_command

__all__ = ["Reader", "exchange"]


@runtime_checkable
class Reader(Protocol):
    """A card slot with a card in it."""

    @property
    def name(self) -> str: ...

    def reset(self) -> bytes:
        """Power the card up (or warm-reset it) and return its ATR."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by SW1 SW2."""
        ...

    @property
    def elapsed(self) -> float:
        """Seconds spent with the card: modeled for a simulated card, measured for
        a real one."""
        ...

    def close(self) -> None:
        """Power the card down and release the slot."""
        ...


def exchange(reader: Reader, apdu: bytes | CommandAPDU, *, max_rounds: int = 64) -> ResponseAPDU:
    """Send a command and collect the whole response (61xx / 6Cxx handled)."""
    raw = apdu.to_bytes() if isinstance(apdu, CommandAPDU) else apdu
    resp = ResponseAPDU.from_bytes(reader.transmit(raw))
    if resp.sw >> 8 == 0x6C:
        cmd = parse_command(raw)
        fixed = CommandAPDU(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, (resp.sw & 0xFF) or 256)
        resp = ResponseAPDU.from_bytes(reader.transmit(fixed.to_bytes()))
    data = resp.data
    rounds = 0
    while resp.sw >> 8 == 0x61:
        rounds += 1
        if rounds > max_rounds:
            break
        n = resp.sw & 0xFF
        resp = ResponseAPDU.from_bytes(reader.transmit(bytes([0x00, 0xC0, 0x00, 0x00, n])))
        data += resp.data
    return ResponseAPDU(data, resp.sw)
