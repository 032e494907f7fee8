"""A card in a PC/SC reader (pcscd on Linux) as a :class:`~cardperso.readers.Reader`.

This is how the line reaches a real card in a contact station: through the PC/SC
resource manager (pcsc-lite's pcscd), with pyscard's thin ``smartcard.scard`` binding
(the low-level calls; it releases the GIL while pcscd works, so module threads run in
parallel). The simulated card reaches the same path behind vsmartcard's vpcd driver
(:mod:`cardperso.readers.vpcd`), so tests drive both through one contract.

- **Readers by name.** pcscd lists readers in directory order; :class:`PcscReader`
  takes the reader's exact name (:func:`pcsc_readers` lists them).
- **reset()** is a cold reset (ISO/IEC 7816-3 §6.2.2): the first call connects
  (``SCardConnect``, which powers the card), later ones ``SCardReconnect`` with
  ``SCARD_UNPOWER_CARD``; the ATR (7816-3 §8) comes from ``SCardStatus``. The protocol
  is T=1, T=0 or either (``protocol=None``); the reader negotiates PPS (§9).
- **transmit()** is raw: response data + SW1 SW2, no GET RESPONSE (pyscard sends none;
  :func:`~cardperso.readers.exchange` does). Extended-length APDUs (7816-4 §5.1) pass
  through under T=1. T=0 carries short APDUs only (7816-3 §12.2: an extended command
  needs ENVELOPE, which the simulated card does not offer): they are refused here.
- **elapsed** is measured wall time spent in transmit and reset.
- **Errors.** Anything pcscd reports (card pulled out mid-command, no card, a card
  reset by another client, pcscd gone) is a :class:`~cardperso.errors.ReaderError`
  naming the reader and what happened: the line rejects the card and remakes the
  record.
- **close()** powers the card down and releases the slot (``SCardDisconnect`` with
  ``SCARD_UNPOWER_CARD``); a later ``reset()`` connects again (the line power-cycles a
  card with close + reset).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from smartcard import scard as _scard

from cardperso.errors import ReaderError

__all__ = ["POLL_S", "PcscReader", "card_state", "pcsc_readers", "wait_for_card"]

S: Any = _scard

T0, T1 = 0, 1

POLL_S = 0.5
"""pcscd looks at a reader without card events (vpcd) every 0.4 s
(``PCSCLITE_STATUS_POLL_RATE``); this is that period with a margin."""
_PROTOCOLS = {0: S.SCARD_PROTOCOL_T0, 1: S.SCARD_PROTOCOL_T1}

_WHAT = {
    S.SCARD_W_REMOVED_CARD: "card removed",
    S.SCARD_E_NO_SMARTCARD: "no card in the reader",
    S.SCARD_W_RESET_CARD: "card was reset by another application",
    S.SCARD_W_UNPOWERED_CARD: "card not powered",
    S.SCARD_W_UNRESPONSIVE_CARD: "card does not answer to reset (mute)",
    S.SCARD_E_NOT_TRANSACTED: "transmission failed (card pulled out?)",
    S.SCARD_E_COMM_DATA_LOST: "transmission failed (data lost)",
    S.SCARD_F_COMM_ERROR: "communication error with the reader",
    S.SCARD_E_NO_SERVICE: "pcscd is not running",
    S.SCARD_E_READER_UNAVAILABLE: "reader unavailable",
    S.SCARD_E_UNKNOWN_READER: "no such reader",
    S.SCARD_E_TIMEOUT: "timeout",
    S.SCARD_E_SHARING_VIOLATION: "reader in use by another application",
    S.SCARD_E_PROTO_MISMATCH: "the card does not offer the requested protocol",
    S.SCARD_E_INVALID_HANDLE: "the connection to the card is gone",
}


def _code(hresult: int) -> int:
    return int(hresult) & 0xFFFFFFFF


def _describe(hresult: int) -> str:
    code = _code(hresult)
    for known, what in _WHAT.items():
        if _code(known) == code:
            return f"{what} (0x{code:08X})"
    return f"{S.SCardGetErrorMessage(hresult)} (0x{code:08X})"


def _context(where: str) -> int:
    hresult, ctx = S.SCardEstablishContext(S.SCARD_SCOPE_USER)
    if hresult != S.SCARD_S_SUCCESS:
        raise ReaderError(f"{where}: cannot reach pcscd: {_describe(hresult)}")
    return int(ctx)


def _release(ctx: int) -> None:
    S.SCardReleaseContext(ctx)


def pcsc_readers() -> list[str]:
    """The names of the readers pcscd knows (empty when it has none)."""
    ctx = _context("PC/SC")
    try:
        hresult, names = S.SCardListReaders(ctx, [])
        if _code(hresult) == _code(S.SCARD_E_NO_READERS_AVAILABLE):
            return []
        if hresult != S.SCARD_S_SUCCESS:
            raise ReaderError(f"PC/SC: cannot list readers: {_describe(hresult)}")
        return [str(n) for n in names]
    finally:
        _release(ctx)


def card_state(reader: str) -> tuple[bool, bytes]:
    """(card present?, its ATR) as pcscd sees the reader now."""
    return _status_change(reader, present=None, timeout=0.0)


def wait_for_card(reader: str, *, present: bool = True, timeout: float = 5.0) -> bytes:
    """Wait until pcscd reports a card in ``reader`` (or, with ``present=False``, the
    reader empty); the card's ATR (b"" when waiting for removal). ReaderError on
    timeout: pcscd polls a reader like vpcd about every 0.4 s."""
    _, atr = _status_change(reader, present=present, timeout=timeout)
    return atr


def _status_change(reader: str, *, present: bool | None, timeout: float) -> tuple[bool, bytes]:
    ctx = _context(reader)
    try:
        deadline = time.monotonic() + timeout
        state = S.SCARD_STATE_UNAWARE
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            wait_ms = 0 if state == S.SCARD_STATE_UNAWARE else int(left * 1000)
            hresult, states = S.SCardGetStatusChange(ctx, wait_ms, [(reader, state)])
            if _code(hresult) == _code(S.SCARD_E_TIMEOUT):
                if present is None or time.monotonic() >= deadline:
                    break
                continue
            if hresult != S.SCARD_S_SUCCESS:
                raise ReaderError(f"{reader}: cannot watch the reader: {_describe(hresult)}")
            _, event, atr = states[0]
            if event & S.SCARD_STATE_UNKNOWN:
                raise ReaderError(f"{reader}: no such reader")
            state = event & ~S.SCARD_STATE_CHANGED
            is_present = bool(event & S.SCARD_STATE_PRESENT) and not (event & S.SCARD_STATE_MUTE)
            if present is None or is_present == present:
                return is_present, bytes(atr) if is_present else b""
            if time.monotonic() >= deadline:
                break
        if present is None:
            return False, b""
        want = "a card" if present else "the card to be removed"
        raise ReaderError(f"{reader}: timed out after {timeout:.1f} s waiting for {want}")
    finally:
        _release(ctx)


class PcscReader:
    """``Reader`` over a card in the PC/SC reader named ``reader`` (see the module notes).

    ``protocol``: 1 (T=1), 0 (T=0) or None (either, the card's first offer).
    ``exclusive``: keep other applications off the card while connected."""

    def __init__(self, reader: str, *, protocol: int | None = T1, exclusive: bool = True) -> None:
        if protocol not in (None, T0, T1):
            raise ValueError("protocol must be 0 (T=0), 1 (T=1) or None (either)")
        self._name = reader
        self._wanted = (
            S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1 if protocol is None else _PROTOCOLS[protocol]
        )
        self._share = S.SCARD_SHARE_EXCLUSIVE if exclusive else S.SCARD_SHARE_SHARED
        self._ctx: int | None = None
        self._card: int | None = None
        self._active = 0
        self._elapsed = 0.0
        self.atr = b""

    @property
    def name(self) -> str:
        return self._name

    @property
    def protocol(self) -> int | None:
        """The protocol in use (0 or 1), None while not connected."""
        if self._card is None:
            return None
        return T0 if self._active == S.SCARD_PROTOCOL_T0 else T1

    @property
    def elapsed(self) -> float:
        return self._elapsed

    def reset(self) -> bytes:
        """Cold reset (connect, or reconnect unpowering the card); the ATR."""
        t0 = time.perf_counter()
        try:
            if self._card is not None:
                hresult, active = S.SCardReconnect(
                    self._card, self._share, self._wanted, S.SCARD_UNPOWER_CARD
                )
                if hresult == S.SCARD_S_SUCCESS:
                    self._active = int(active)
                    return self._read_atr()
                # the card that was there is gone (a new one may be in): start afresh
                self._disconnect(S.SCARD_LEAVE_CARD)
            if self._ctx is None:
                self._ctx = _context(self._name)
            hresult, card, active = S.SCardConnect(self._ctx, self._name, self._share, self._wanted)
            if hresult != S.SCARD_S_SUCCESS:
                raise ReaderError(f"{self._name}: cannot power the card: {_describe(hresult)}")
            self._card, self._active = int(card), int(active)
            return self._read_atr()
        finally:
            self._elapsed += time.perf_counter() - t0

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise ReaderError(f"{self._name}: card not powered (reset first)")
        if self._active == S.SCARD_PROTOCOL_T0 and _extended(apdu):
            raise ReaderError(
                f"{self._name}: extended-length APDU under T=0 "
                "(T=0 carries short APDUs only, ISO/IEC 7816-3 §12.2; use T=1)"
            )
        pci = self._active
        t0 = time.perf_counter()
        try:
            hresult, response = S.SCardTransmit(self._card, pci, list(apdu))
        finally:
            self._elapsed += time.perf_counter() - t0
        if hresult != S.SCARD_S_SUCCESS:
            raise ReaderError(f"{self._name}: {_describe(hresult)}")
        out = bytes(response)
        if len(out) < 2:
            raise ReaderError(f"{self._name}: no answer from the card (pulled out?)")
        return out

    def close(self) -> None:
        """Power the card down and release the slot (safe to call twice)."""
        self._disconnect(S.SCARD_UNPOWER_CARD)
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            _release(ctx)

    def _disconnect(self, disposition: int) -> None:
        if self._card is not None:
            card, self._card = self._card, None
            S.SCardDisconnect(card, disposition)  # the card may be gone: nothing to report

    def _read_atr(self) -> bytes:
        assert self._card is not None
        hresult, _reader, _state, _protocol, atr = S.SCardStatus(self._card)
        if hresult != S.SCARD_S_SUCCESS:
            raise ReaderError(f"{self._name}: no ATR: {_describe(hresult)}")
        self.atr = bytes(atr)
        return self.atr

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ReaderError):
            self.close()

    def __repr__(self) -> str:
        return f"PcscReader({self._name!r})"


def _extended(apdu: bytes) -> bool:
    """True for an extended-length command: after the header, a 00 byte then Lc or Le
    on two bytes (ISO/IEC 7816-4 §5.1); a short command's fifth byte is a non-zero Lc
    or the only byte (Le)."""
    return len(apdu) > 5 and apdu[4] == 0
