"""The card operating system: power-up, the ATR, protocol state, and the one
dispatcher that turns every byte string into a response ending in a status word.

Persistent state lives in EEPROM (see :mod:`layout`); this object holds only the
RAM of a running chip - current DF/EF, security status, the last challenge, the
secure-messaging session, pending response bytes - all lost at reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cardperso.apdu import ApduFormatError, CommandAPDU, parse_command
from cardperso.card import access
from cardperso.card.commands_file import CardWarning
from cardperso.card.errors import CardError, PowerLost
from cardperso.card.layout import (
    MANUFACTURER_RECORD,
    OS_VERSION,
    ManufacturerInfo,
    unpack_manufacturer,
)
from cardperso.card.memory import Eeprom
from cardperso.card.store import NO_PARENT, Entry, Lifecycle, ObjType, Store
from cardperso.card.timing import DI_TABLE, FI_TABLE, TimingModel, TimingParams
from cardperso.crypto.rand import RandomSource, SystemRandom
from cardperso.securemsg import SmChannel

__all__ = ["CardMute", "CardOS", "Handler"]

Handler = Callable[["CardOS", CommandAPDU], bytes]

MAX_TA1 = 0x96  # supports up to Fi = 512, Di = 32 (7816-3 Tables 7/8)

# What a BLOCKED (GP CARD_LOCKED) card still does: identify itself, let the
# issuer's admin key authenticate, and be unblocked, depersonalized or terminated.
BLOCKED_OK = {
    (0x00, 0xCA),
    (0x00, 0xA4),
    (0x00, 0x84),
    (0x00, 0x82),
    (0x00, 0x86),
    (0x80, 0xF0),
    (0x80, 0xEE),
}
# What a card with a corrupted structure still answers: WRITE MEMORY (to repair an
# image before the lock), CHECKSUM MEMORY and GET DATA (to diagnose).
DAMAGED_OK = {
    (0x80, 0xD0),
    (0x80, 0xB4),
    (0x00, 0xCA),
}


class CardMute(Exception):
    """The card does not answer: not powered, or it lost power mid-command."""


@dataclass(slots=True)
class Ram:
    """Volatile state; a new instance at every reset."""

    current_df: int | None = None
    current_ef: int | None = None
    verified_pins: set[int] = field(default_factory=set)
    auth_keys: set[int] = field(default_factory=set)
    challenge: bytes | None = None
    sm: SmChannel | None = None
    ga_pending: tuple[int, str, bytes, bytes, bytes, bytes] | None = None
    response_buffer: bytes = b""
    sm_command: bool = False  # the command being processed arrived under SM


def decode_cla(cla: int) -> tuple[int, bool]:
    """Reduce a class byte to (00 or 80, secure messaging?) or refuse it
    (ISO/IEC 7816-4 §5.4.1). Supported: the basic logical channel only, no command
    chaining, SM only in the b4b3 = 11 form (header authenticated); the proprietary
    class 80 takes the same b4b3 coding (8C = 80 under SM, as GlobalPlatform does)."""
    if cla == 0xFF:
        raise CardError(0x6E00)  # invalid (reserved for PPS)
    if cla & 0x80:
        if cla & 0x60:
            raise CardError(0x6E00)  # other proprietary classes are not ours
        base = 0x80
    elif cla & 0x40:
        raise CardError(0x6881)  # further interindustry class: channels 4..19
    elif cla & 0x20:
        raise CardError(0x6E00)  # RFU
    else:
        base = 0x00
    if cla & 0x03:
        raise CardError(0x6881)  # logical channels 1..3 are not supported
    if cla & 0x10:
        raise CardError(0x6884)
    sm_bits = cla & 0x0C
    if sm_bits in (0x04, 0x08):
        raise CardError(0x6882)  # proprietary SM / SM without header authentication
    return base, sm_bits == 0x0C


def build_atr(os_version: bytes = OS_VERSION) -> bytes:
    """ATR (7816-3 §8): direct convention, TA1 = 96, T=0 and T=1 offered, IFSC 254,
    historical bytes in compact-TLV (7816-4 §8.1.1): card capabilities and the OS
    version as pre-issuing data."""
    hist = bytes([0x80, 0x73, 0xB0, 0x21, 0x40, 0x60 | len(os_version)]) + os_version
    body = bytes([0x90 | len(hist), MAX_TA1, 0x80, 0x31, 0xFE, 0x45]) + hist
    tck = 0
    for b in body:
        tck ^= b
    return bytes([0x3B]) + body + bytes([tck])


class CardOS:
    """One simulated chip. Reach it only through a Reader (``readers.virtual``)."""

    def __init__(
        self,
        eeprom: Eeprom,
        rng: RandomSource | None = None,
        timing: TimingParams | None = None,
        os_version: bytes = OS_VERSION,
    ) -> None:
        self.eeprom = eeprom
        self.os_version = os_version  # the ROM mask this chip runs
        self.atr = build_atr(os_version)
        self.rng: RandomSource = rng or SystemRandom()
        self.timing = TimingModel(timing)
        self.powered = False
        self.damaged = False
        self.info: ManufacturerInfo | None = None
        self.store: Store | None = None
        self.ram = Ram()
        self.commands_processed = 0
        from cardperso.card.commands import HANDLERS  # late: handlers import this module

        self._handlers: dict[tuple[int, int], Handler] = HANDLERS

    # -- identity -----------------------------------------------------------
    @property
    def chip_serial(self) -> bytes:
        info = unpack_manufacturer(self.eeprom.read(0, MANUFACTURER_RECORD))
        return info.chip_serial if info else b""

    @property
    def st(self) -> Store:
        if self.store is None:
            raise CardError(0x6581)
        return self.store

    # -- power --------------------------------------------------------------
    def power_on(self) -> bytes:
        """Cold reset: start-up housekeeping, then the ATR."""
        self.powered = True
        self.ram = Ram()
        try:
            self._startup()
        except PowerLost:
            self.powered = False
            raise CardMute("power lost during start-up") from None
        pages = self.eeprom.take_cost_pages()
        self.timing.protocol = 1
        self.timing.reset(len(self.atr))
        self.timing.total += pages * self.timing.p.eeprom_page_write_s
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        self.powered = False
        self.ram = Ram()

    def pps(self, protocol: int, ta1: int | None = None) -> bool:
        """Protocol and parameter selection right after the ATR (7816-3 §9)."""
        if not self.powered or protocol not in (0, 1):
            return False
        fi, di = 372, 1
        if ta1 is not None:
            f = FI_TABLE.get(ta1 >> 4)
            d = DI_TABLE.get(ta1 & 0x0F)
            fmax, dmax = FI_TABLE[MAX_TA1 >> 4], DI_TABLE[MAX_TA1 & 0x0F]
            if f is None or d is None or d / f > dmax / fmax:
                return False
            fi, di = f, d
        self.timing.pps()
        self.timing.protocol = protocol
        self.timing.set_rate(fi, di)
        return True

    def _startup(self) -> None:
        self.damaged = False
        info = unpack_manufacturer(self.eeprom.read(0, MANUFACTURER_RECORD))
        if info is None or info.os_version != self.os_version:
            self.damaged = True
            self.info = self.store = None
            return
        self.info = info
        store = Store(self.eeprom, info.layout)
        store.journal.recover()
        lay = info.layout
        # The dump routine deletes itself at every reset (one session only).
        dump_len = lay.dump_pages * lay.page_size
        if any(self.eeprom.read(lay.dump, dump_len)):
            self.eeprom.write(lay.dump, bytes(dump_len))
        self.store = store
        try:
            store.reload()
        except CardError:
            self.damaged = True
            return
        self.enforce_lock_invariant()
        if store.system.deperso_pending:
            from cardperso.card.commands_admin import continue_depersonalization

            try:
                continue_depersonalization(self)
            except CardError:
                self.damaged = True
                return
        self.select_mf()

    def enforce_lock_invariant(self) -> None:
        """A card that has left MANUFACTURED always has its lock fuse blown, however
        it got there (an image's system page, say)."""
        st = self.st
        if st.system.lifecycle != Lifecycle.MANUFACTURED and not st.locked:
            st.set_lock()

    def select_mf(self) -> None:
        for i, e in self.st.iter_entries():
            if e.type == ObjType.DF and e.parent == NO_PARENT:
                self.ram.current_df = i
                return
        self.ram.current_df = None

    # -- the dispatcher -----------------------------------------------------
    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU; always returns data + SW unless power is lost."""
        if not self.powered:
            raise CardMute("card not powered")
        self.commands_processed += 1
        try:
            out = self._process(raw)
        except PowerLost:
            self.powered = False
            self.ram = Ram()
            if self.store is not None:
                self.store.abort()
            raise CardMute("power lost") from None
        pages = self.eeprom.take_cost_pages()
        self.timing.command(len(raw), len(out), pages)
        return out

    def _process(self, raw: bytes) -> bytes:
        try:
            cmd = parse_command(raw)
        except ApduFormatError:
            return b"\x67\x00"
        try:
            base, sm = decode_cla(cmd.cla)
            if cmd.ins == 0xC0 and base == 0x00 and not sm:
                return self._get_response(cmd)
            self.ram.response_buffer = b""
            if self.damaged and (base, cmd.ins) not in DAMAGED_OK:
                raise CardError(0x6581)
            if sm:
                from cardperso.card.sm import process_sm

                return process_sm(self, cmd, base)
            data, sw = self.execute(cmd)
            return self._deliver(cmd, data, sw)
        except CardError as e:
            if self.store is not None:
                self.store.abort()
            return e.sw.to_bytes(2, "big")
        except PowerLost:
            raise
        except Exception:  # a bug must never crash the chip: answer "no diagnosis"
            if self.store is not None:
                self.store.abort()
            return b"\x6f\x00"

    def execute(self, cmd: CommandAPDU, *, sm: bool = False) -> tuple[bytes, int]:
        """Run one command whose CLA is already reduced to 00 or 80 (SM unwrapped);
        returns (data, SW) or raises CardError."""
        cla = cmd.cla
        handler = self._handlers.get((cla, cmd.ins))
        if handler is None:
            if any(ins == cmd.ins for (_, ins) in self._handlers):
                raise CardError(0x6E00)  # known INS under another class
            raise CardError(0x6D00)
        if self.store is None:
            raise CardError(0x6581)
        lc = self.st.system.lifecycle
        if lc == Lifecycle.TERMINATED and (cla, cmd.ins) != (0x00, 0xCA):
            raise CardError(0x6985)
        if lc == Lifecycle.BLOCKED and (cla, cmd.ins) not in BLOCKED_OK:
            raise CardError(0x6985)
        self.ram.sm_command = sm
        try:
            return handler(self, cmd), 0x9000
        except CardWarning as w:
            return w.data, w.sw

    def _deliver(self, cmd: CommandAPDU, data: bytes, sw: int) -> bytes:
        """Apply Ne and the T=0 rules: a case-4 command under T=0 answers 61xx and
        waits for GET RESPONSE (7816-3 §10.3.5); data beyond Ne is kept for it too."""
        if sw != 0x9000:  # a warning carries at most Ne bytes and is not chained
            return data[: cmd.le] + sw.to_bytes(2, "big")
        if not data:
            return sw.to_bytes(2, "big")
        hold_all = cmd.le == 0 or (self.timing.protocol == 0 and bool(cmd.data))
        if hold_all or len(data) > cmd.le:
            first = b"" if hold_all else data[: cmd.le]
            self.ram.response_buffer = data[len(first) :]
            return first + self._more_sw()
        return data + sw.to_bytes(2, "big")

    def _more_sw(self) -> bytes:
        n = len(self.ram.response_buffer)
        return bytes([0x61, n if n < 256 else 0])

    def _get_response(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 or cmd.p2 or cmd.data:
            raise CardError(0x6A86 if cmd.p1 or cmd.p2 else 0x6700)
        buf = self.ram.response_buffer
        if not buf:
            raise CardError(0x6985)
        ne = cmd.le or 256
        if self.timing.protocol == 0 and ne < min(len(buf), 256) and cmd.le != 256:
            return bytes([0x6C, min(len(buf), 256) & 0xFF])
        out, self.ram.response_buffer = buf[:ne], buf[ne:]
        if self.ram.response_buffer:
            return out + self._more_sw()
        return out + b"\x90\x00"

    # -- helpers for handlers -----------------------------------------------
    def rand(self, n: int) -> bytes:
        self.timing.crypto("rng", -(-n // 8))
        return self.rng.random_bytes(n)

    def check_access(self, e: Entry, op: access.Op) -> None:
        """Raise 6982 unless the security status satisfies ``op`` on file ``e``.

        While the card is MANUFACTURED (initialization), file access conditions are
        not enforced: physical memory is open then anyway, and the initializing
        machine must fill files whose conditions only a personalized card meets."""
        if self.st.system.lifecycle == Lifecycle.MANUFACTURED:
            return
        sc = access.condition(e.sc, op)
        if sc == access.ALWAYS:
            return
        if sc == access.NEVER:
            raise CardError(0x6982)
        ref = sc & 0x0F
        checks: list[bool] = []
        if sc & access.SC_SM:
            checks.append(self.ram.sm_command)
        if sc & access.SC_KEY:
            checks.append(ref in self.ram.auth_keys)
        if sc & access.SC_PIN:
            checks.append(ref in self.ram.verified_pins)
        ok = all(checks) if sc & access.SC_ALL else any(checks)
        if not checks or not ok:
            raise CardError(0x6982)
