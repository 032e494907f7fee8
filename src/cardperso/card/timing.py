"""Modeled card time: what a real chip on a real contact interface would take.

The model charges, per command: the characters on the I/O line at the negotiated
bit rate (ISO/IEC 7816-3), the OS's own processing, every EEPROM page program,
and each on-card cryptographic operation. Nothing here is tuned to reach a result;
each figure is a physical parameter with its source or reasoning in
``docs/card-os.md`` ("Timing model").
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DI_TABLE", "FI_TABLE", "TimingModel", "TimingParams"]

# ISO/IEC 7816-3:2006 Table 7 (Fi by FI code) and Table 8 (Di by DI code).
FI_TABLE: dict[int, int] = {
    0x0: 372,
    0x1: 372,
    0x2: 558,
    0x3: 744,
    0x4: 1116,
    0x5: 1488,
    0x6: 1860,
    0x9: 512,
    0xA: 768,
    0xB: 1024,
    0xC: 1536,
    0xD: 2048,
}
DI_TABLE: dict[int, int] = {
    0x1: 1,
    0x2: 2,
    0x3: 4,
    0x4: 8,
    0x5: 16,
    0x6: 32,
    0x7: 64,
    0x8: 12,
    0x9: 20,
}


@dataclass(frozen=True, slots=True)
class TimingParams:
    """Physical parameters (seconds, hertz, clock cycles); see docs/card-os.md."""

    clock_hz: float = 3.5712e6  # 7816-3 reference clock: Fd=372/Dd=1 gives 9,600 bit/s
    atr_delay_cycles: int = 40_000  # 7816-3 §6.2.2: ATR within 400..40,000 clocks; worst case
    t0_char_etu: int = 12  # 1 start + 8 data + 1 parity + 2 etu guard time (7816-3 §7.1, §10.2)
    t1_char_etu: int = 12  # CGT = 12 etu: no TC1 in our ATR, so N = 0 (7816-3 §11.2)
    t0_turnaround_etu: int = 16  # 7816-3 §10.2: >= 16 etu between opposite-direction chars
    t1_block_guard_etu: int = 22  # BGT (7816-3 §11.2)
    t1_ifs: int = 254  # IFSC/IFSD after negotiation; larger APDUs are chained
    cpu_cycles_per_command: int = 7_000  # parse, dispatch, access check, file look-up
    cpu_cycles_per_byte: int = 40  # copying / checking command and response bytes
    eeprom_page_write_s: float = 3.5e-3  # erase + program of one page
    crypto_s: dict[str, float] = field(
        default_factory=lambda: {
            "des": 60e-6,  # one DES/3DES block on the crypto coprocessor
            "aes": 40e-6,  # one AES block on the coprocessor
            "sha256": 250e-6,  # one 64-byte SHA-256 block on a hash coprocessor
            "ec_keygen": 0.150,  # P-256 key pair: one point multiplication + checks
            "ecdh": 0.110,  # P-256 point multiplication
            "ecdsa_sign": 0.120,  # P-256 signature
            "rng": 200e-6,  # 8 bytes from the true RNG, post-processed
        }
    )


class TimingModel:
    """Accumulates modeled seconds for one card."""

    def __init__(self, params: TimingParams | None = None) -> None:
        self.p = params or TimingParams()
        self.fi = 372
        self.di = 1
        self.protocol = 1
        self.total = 0.0
        self.crypto_pending = 0.0

    @property
    def etu_s(self) -> float:
        return self.fi / (self.di * self.p.clock_hz)

    @property
    def baud(self) -> float:
        return self.p.clock_hz * self.di / self.fi

    def set_rate(self, fi: int, di: int) -> None:
        self.fi, self.di = fi, di

    def reset(self, atr_len: int) -> float:
        """Cold/warm reset: ATR delay plus the ATR characters at the initial rate."""
        self.fi, self.di = 372, 1
        t = self.p.atr_delay_cycles / self.p.clock_hz + atr_len * self.p.t0_char_etu * self.etu_s
        self.total += t
        return t

    def pps(self) -> float:
        """A 4-character PPS request and its echo, at the initial rate (7816-3 §9)."""
        t = 8 * self.p.t0_char_etu * (372 / self.p.clock_hz)
        self.total += t
        return t

    def crypto(self, op: str, count: int = 1) -> None:
        self.crypto_pending += self.p.crypto_s[op] * count

    def io_seconds(self, cmd_len: int, resp_len: int) -> float:
        """Line time for one command APDU and its response APDU (including SW)."""
        etu = self.etu_s
        p = self.p
        if self.protocol == 0:
            # header(5) [+ data], one procedure byte, [data +] SW(2). A case-4
            # command's data comes back by a separate GET RESPONSE exchange,
            # charged when that command is sent.
            chars = cmd_len + 1 + resp_len
            return (chars * p.t0_char_etu + 2 * p.t0_turnaround_etu) * etu
        blocks_out = max(1, -(-cmd_len // p.t1_ifs))
        blocks_in = max(1, -(-resp_len // p.t1_ifs))
        # each I-block has 3 prologue + 1 LRC chars; each chained block is acked
        # by a 4-character R-block in the other direction.
        chars = cmd_len + resp_len + 4 * (blocks_out + blocks_in)
        chars += 4 * ((blocks_out - 1) + (blocks_in - 1))
        turns = 2 * (blocks_out + blocks_in - 1)
        return (chars * p.t1_char_etu + turns * p.t1_block_guard_etu) * etu

    def command(self, cmd_len: int, resp_len: int, pages: int) -> float:
        """Charge one command; returns its modeled seconds."""
        p = self.p
        cpu = p.cpu_cycles_per_command + p.cpu_cycles_per_byte * (cmd_len + resp_len)
        t = (
            self.io_seconds(cmd_len, resp_len)
            + cpu / p.clock_hz
            + pages * p.eeprom_page_write_s
            + self.crypto_pending
        )
        self.crypto_pending = 0.0
        self.total += t
        return t
