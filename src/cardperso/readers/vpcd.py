"""The card side of vsmartcard's vpcd: a simulated card served into a PC/SC reader slot.

vpcd is a pcscd reader driver whose "card" is whatever connects to its TCP port, so
the simulated card can sit behind pcscd and be reached by any PC/SC client (our
:class:`~cardperso.readers.pcsc.PcscReader`, opensc-tool, a browser's middleware)
exactly as a real card in a contact reader is.

The wire protocol (vsmartcard ``vpcd.c``): the card *connects to* vpcd; every message
either way is a 2-byte big-endian length and a payload. A 1-byte payload is a control
from the reader: 0 power off, 1 power on (cold reset, ISO/IEC 7816-3 §6.2.2), 2 reset
(warm reset, §6.2.3), 4 "send your ATR" (answered with the ATR; pcscd asks it on every
presence poll); anything longer is a command APDU (ISO/IEC 7816-4 §5.1), answered with
response data + SW1 SW2. The connection being open *is* the card being in the slot:
closing it is pulling the card out.

Two timing facts shape the code: vpcd writes a request in pieces and Linux delays the
ACK, so ``TCP_QUICKACK`` is set before every ``recv`` (without it every APDU stalls
about 44 ms); and pcscd only notices an insertion or removal at its next presence
poll (up to about 0.4 s), so callers wait for pcscd's view
(:func:`cardperso.readers.pcsc.wait_for_card`) before they use a slot.

vpcd listens on all interfaces; this side connects to 127.0.0.1 only.

The served card is any :class:`~cardperso.readers.Reader` with its ATR (a
:class:`~cardperso.readers.virtual.VirtualReader` normally: ``reset`` powers it up and
performs PPS to its protocol, ``close`` powers it down); this module does not import
the card OS, it relays.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from cardperso.errors import ReaderError
from cardperso.readers.base import Reader

__all__ = ["VPCD_HOST", "VpcdSlot"]

VPCD_HOST = "127.0.0.1"
"""Where vpcd is reached: the loopback address only (vpcd itself binds every interface)."""

CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


class VpcdSlot:
    """One vpcd reader slot seen from the card side: insert a card, remove it, insert the
    next. One server thread per inserted card answers vpcd's requests."""

    def __init__(self, port: int, *, name: str | None = None) -> None:
        self.port = port
        self.name = name or f"vpcd slot {port}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._card: Reader | None = None
        self._pull_after: int | None = None
        self.apdus = 0
        """Command APDUs the current card answered (reset at each insertion)."""
        self.pulled_at: float | None = None
        """``time.monotonic()`` when the current or last card left the slot by itself
        (pulled out, mute, vpcd gone) rather than by :meth:`remove`; None otherwise."""
        self.error: BaseException | None = None
        """The last unexpected error of a server thread (a bug, not a pulled card)."""

    # -- the slot ---------------------------------------------------------------------

    @property
    def card(self) -> Reader | None:
        """The card in the slot (None when empty)."""
        return self._card

    @property
    def occupied(self) -> bool:
        """True while the connection to vpcd is open (pcscd may not have noticed yet)."""
        with self._lock:
            return self._sock is not None

    def insert(self, card: Reader, atr: bytes, *, timeout: float = 10.0) -> None:
        """Put ``card`` into the slot: connect to vpcd (retrying while pcscd and its
        driver are not up yet) and start answering. The card is usable once pcscd has
        polled the slot, 0.2-0.4 s later."""
        if self.occupied:
            raise ReaderError(f"{self.name}: a card is already in the slot")
        sock = _connect(self.port, timeout, self.name)
        with self._lock:
            self._sock, self._card, self._pull_after, self.apdus = sock, card, None, 0
            self.pulled_at = None
        thread = threading.Thread(
            target=self._serve, args=(sock, card, bytes(atr)), name=self.name, daemon=True
        )
        self._thread = thread
        thread.start()

    def remove(self) -> Reader | None:
        """Pull the card out (close the connection; pcscd sees the slot empty at its next
        poll) and power it down. Returns the card that was in the slot."""
        with self._lock:
            sock, card, thread = self._sock, self._card, self._thread
            self._sock, self._card, self._thread = None, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        if sock is not None:
            sock.close()
        if card is not None:
            with contextlib.suppress(ReaderError):
                card.close()
        return card

    def change(self, card: Reader, atr: bytes, reader: str, *, timeout: float = 5.0) -> None:
        """Swap cards the way pcscd can follow, for the PC/SC reader named ``reader``:
        pull the card that is in, wait until pcscd reports the reader empty, insert
        ``card``, wait until pcscd reports it present (about 0.8 s in all: two of
        pcscd's polls). A card that left by itself (pulled out mid-command, mute) gets
        one more poll period first: pcscd may have learnt of that removal from the
        failed command instead of from its own poll, and a card inserted before that
        poll would go unseen (the reader would stay "empty" until pcscd restarts)."""
        from cardperso.readers.pcsc import POLL_S, wait_for_card

        pulled_at = self.pulled_at
        self.remove()
        wait_for_card(reader, present=False, timeout=timeout)
        if pulled_at is not None:
            time.sleep(max(pulled_at + POLL_S - time.monotonic(), 0.0))
        self.insert(card, atr, timeout=timeout)
        wait_for_card(reader, present=True, timeout=timeout)

    def pull_after(self, apdus: int) -> None:
        """Fault injection: the card is pulled out when the ``apdus``-th next command
        APDU arrives, before it is answered (a card torn out of the reader mid-command)."""
        with self._lock:
            self._pull_after = self.apdus + apdus

    def close(self) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"VpcdSlot({self.name!r}, port={self.port})"

    # -- the server thread ------------------------------------------------------------

    def _serve(self, sock: socket.socket, card: Reader, atr: bytes) -> None:
        try:
            while True:
                request = _receive(sock)
                if request is None:
                    break  # vpcd closed (pcscd stopped) or the card was removed
                if len(request) == 1:
                    if not self._control(sock, card, atr, request[0]):
                        break
                    continue
                with self._lock:
                    pull = self._pull_after is not None and self.apdus + 1 >= self._pull_after
                if pull:
                    break
                try:
                    response = card.transmit(request)
                except ReaderError:
                    break  # a mute card: to vpcd it is a card gone
                self.apdus += 1
                _send(sock, response)
        except OSError:
            pass  # the connection went away under us: the card is out either way
        except Exception as e:
            self.error = e
        finally:
            self._gone(sock)

    def _control(self, sock: socket.socket, card: Reader, atr: bytes, code: int) -> bool:
        """One reader control byte; False when the card cannot go on (mute at reset)."""
        if code == CTRL_ATR:
            _send(sock, atr)
        elif code in (CTRL_ON, CTRL_RESET):
            try:
                card.reset()
            except ReaderError:
                return False  # no answer to reset: the reader finds no working card
        elif code == CTRL_OFF:
            with contextlib.suppress(ReaderError):
                card.close()
        return True  # other codes are not defined by vpcd: ignore them

    def _gone(self, sock: socket.socket) -> None:
        """The connection ended from the card's side: the slot is empty."""
        with self._lock:
            if self._sock is sock:  # not removed by remove(): the card left by itself
                self._sock, self._card, self._thread = None, None, None
                self.pulled_at = time.monotonic()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _connect(port: int, timeout: float, name: str) -> socket.socket:
    """Connect to vpcd on the loopback address, retrying while nothing listens yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((VPCD_HOST, port), timeout=2.0)
        except (ConnectionRefusedError, TimeoutError) as e:
            if time.monotonic() >= deadline:
                raise ReaderError(
                    f"{name}: vpcd does not accept a card on port {port}: {e}"
                ) from None
            time.sleep(0.05)
            continue
        except OSError as e:
            raise ReaderError(f"{name}: cannot reach vpcd on port {port}: {e}") from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _receive(sock: socket.socket) -> bytes | None:
    """One length-prefixed message, or None when the connection is closed."""
    head = _exactly(sock, 2)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    return _exactly(sock, n) if n else b""


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        # vpcd's delayed ACK would hold each request ~40 ms: ask for quick ACKs again
        # before every read (Linux clears the flag after it is used).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)
