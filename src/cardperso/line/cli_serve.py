"""``cardperso card serve``: simulated blank cards in PC/SC readers, until stopped.

Each card of a seeded stock run goes into a vpcd reader slot (vsmartcard's PC/SC
driver, :mod:`cardperso.readers.vpcd`), where any PC/SC program (opensc-tool, a
browser's middleware, our own ``PcscReader``) can talk to it as to a card in a contact
reader. Against the machine's pcscd the default ports are Debian's vpcd
configuration (two readers, "Virtual PCD 00 00" and "00 01", on TCP 35963 and 35964);
``--own-pcscd N`` starts a private pcscd with N slots instead
(:class:`~cardperso.readers.pcscd.PcscdRig`) and prints the socket its clients need in
``PCSCLITE_CSOCK_NAME``.

A slot whose card connection ends (pcscd restarted, or not up yet: vpcd refuses
the connection) gets its card again as soon as vpcd accepts it. Ctrl-C or SIGTERM
takes the cards out and stops a private pcscd.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from cardperso.errors import CardpersoError, ReaderError
from cardperso.line.cli_commands import card_app
from cardperso.readers.pcscd import PcscdRig
from cardperso.readers.virtual import VirtualReader, virtual_readers
from cardperso.readers.vpcd import VpcdSlot

__all__ = ["card_serve"]

DEBIAN_VPCD_PORTS = (35963, 35964)


@card_app.command("serve")
def card_serve(
    port: Annotated[
        list[int] | None,
        typer.Option("--port", help="vpcd port of a slot (repeat; default 35963 and 35964)"),
    ] = None,
    own_pcscd: Annotated[
        int | None,
        typer.Option("--own-pcscd", min=1, max=16, help="start a private pcscd with N slots"),
    ] = None,
    seed: Annotated[str, typer.Option("--seed", help="card stock seed")] = "serve",
    protocol: Annotated[int, typer.Option("--protocol", min=0, max=1, help="T=0 or T=1")] = 1,
) -> None:
    """Serve simulated blank cards into vpcd reader slots until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    rig: PcscdRig | None = None
    slots: list[VpcdSlot] = []
    try:
        if own_pcscd is not None:
            rig = PcscdRig(own_pcscd)
            try:
                rig.start()
            except CardpersoError as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(e.exit_code) from None
            typer.echo(f"pcscd pid {rig.pid}; clients set PCSCLITE_CSOCK_NAME={rig.socket_path}")
            targets = [(s.port, s.reader) for s in rig.slots]
        else:
            ports = port or list(DEBIAN_VPCD_PORTS)
            targets = [(p, f"vpcd port {p}") for p in ports]
        cards = virtual_readers(seed, len(targets), protocol=protocol)
        for (p, name), card in zip(targets, cards, strict=True):
            slots.append(VpcdSlot(p, name=name))
            typer.echo(f"{name}: card {_serial(card)} (port {p}, T={protocol})")
        typer.echo("serving; Ctrl-C or SIGTERM to stop")
        _serve(slots, cards, stop)
    except KeyboardInterrupt:
        pass
    finally:
        for slot in slots:
            slot.remove()
        if rig is not None:
            rig.stop()
        signal.signal(signal.SIGTERM, previous)
    typer.echo("stopped")


def _serve(slots: list[VpcdSlot], cards: list[VirtualReader], stop: threading.Event) -> None:
    """Keep every card in its slot: (re)insert it whenever vpcd accepts a card."""
    while not stop.is_set():
        for slot, card in zip(slots, cards, strict=True):
            if not slot.occupied:
                try:
                    slot.insert(card, card.card.atr, timeout=0.1)
                except ReaderError:
                    continue  # pcscd (vpcd) not up yet: try again
        stop.wait(0.25)


def _serial(card: VirtualReader) -> str:
    return card.card.chip_serial.hex().upper()
