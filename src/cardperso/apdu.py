"""Command and response APDUs (ISO/IEC 7816-4:2020 §5) and the status words we use.

Shared vocabulary of the host and the simulated card. :func:`parse_command`
accepts every case of §5.1 (1, 2S, 3S, 4S, 2E, 3E, 4E) and rejects the rest
with :class:`ApduFormatError`, so a card can answer 6700 instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["SW", "ApduFormatError", "CommandAPDU", "ResponseAPDU", "parse_command", "sw_text"]


class SW(IntEnum):
    """Status words (ISO/IEC 7816-4:2020 §5.6, Tables 5-6)."""

    OK = 0x9000
    WARN_EOF = 0x6282  # end of file/record reached before reading Ne bytes
    WARN_DEACTIVATED = 0x6283  # selected file deactivated
    WARN_TERMINATED = 0x6285  # selected file in termination state
    VERIFY_FAILED = 0x6300
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    CLA_FUNCTION_NOT_SUPPORTED = 0x6800
    SM_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_INCOMPATIBLE = 0x6981
    SECURITY_STATUS = 0x6982
    AUTH_BLOCKED = 0x6983
    REF_DATA_UNUSABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    SM_MISSING = 0x6987
    SM_INCORRECT = 0x6988
    WRONG_DATA = 0x6A80
    FUNC_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REF_DATA_NOT_FOUND = 0x6A88
    FILE_EXISTS = 0x6A89
    DF_NAME_EXISTS = 0x6A8A
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_DIAGNOSIS = 0x6F00


_TEXT = {sw.value: sw.name.replace("_", " ").lower() for sw in SW}


def sw_text(sw: int) -> str:
    """Short human text for a status word (for logs and error messages)."""
    hi = sw >> 8
    if hi == 0x61:
        return f"{sw & 0xFF} bytes still available"
    if hi == 0x6C:
        return f"wrong Le, exact length is {sw & 0xFF}"
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0xF} tries left"
    return _TEXT.get(sw, "unknown status")


class ApduFormatError(ValueError):
    """Bytes that are not a command APDU of any case of ISO/IEC 7816-4 §5.1."""


@dataclass(frozen=True, slots=True)
class CommandAPDU:
    """A decoded command. ``le`` is Ne (0 = no response data expected; 256/65536 = max)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int = 0
    extended: bool = False

    def to_bytes(self) -> bytes:
        """Encode, choosing short or extended form (§5.1)."""
        head = bytes([self.cla, self.ins, self.p1, self.p2])
        nc, ne = len(self.data), self.le
        ext = self.extended or nc > 255 or ne > 256
        if not ext:
            body = (bytes([nc]) + self.data) if nc else b""
            if ne:
                body += bytes([0 if ne == 256 else ne])
            return head + body
        out = head + b"\x00"
        if nc:
            out += nc.to_bytes(2, "big") + self.data
        if ne:
            out += (0 if ne == 65536 else ne).to_bytes(2, "big")
        return out

    def __repr__(self) -> str:  # data may be secret: show length only
        return (
            f"CommandAPDU({self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X}, "
            f"Nc={len(self.data)}, Ne={self.le})"
        )


@dataclass(frozen=True, slots=True)
class ResponseAPDU:
    """Response data and status word."""

    data: bytes
    sw: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise ApduFormatError("response shorter than a status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    def __repr__(self) -> str:
        return f"ResponseAPDU(Nr={len(self.data)}, SW={self.sw:04X})"


def parse_command(raw: bytes) -> CommandAPDU:
    """Decode a command APDU; every malformed input raises ApduFormatError."""
    n = len(raw)
    if n < 4:
        raise ApduFormatError("shorter than a header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if n == 4:  # case 1
        return CommandAPDU(cla, ins, p1, p2)
    b = raw[4]
    if n == 5:  # case 2S
        return CommandAPDU(cla, ins, p1, p2, b"", b or 256)
    if b != 0:  # short Lc
        if n == 5 + b:  # case 3S
            return CommandAPDU(cla, ins, p1, p2, bytes(raw[5:]))
        if n == 6 + b:  # case 4S
            le = raw[-1]
            return CommandAPDU(cla, ins, p1, p2, bytes(raw[5:-1]), le or 256)
        raise ApduFormatError("Lc does not match the length")
    # extended forms begin with 00
    if n == 7:  # case 2E
        le = int.from_bytes(raw[5:7], "big")
        return CommandAPDU(cla, ins, p1, p2, b"", le or 65536, True)
    if n < 7:
        raise ApduFormatError("truncated extended length")
    nc = int.from_bytes(raw[5:7], "big")
    if nc == 0:
        raise ApduFormatError("extended Lc of zero")
    if n == 7 + nc:  # case 3E
        return CommandAPDU(cla, ins, p1, p2, bytes(raw[7:]), 0, True)
    if n == 9 + nc:  # case 4E
        le = int.from_bytes(raw[-2:], "big")
        return CommandAPDU(cla, ins, p1, p2, bytes(raw[7:-2]), le or 65536, True)
    raise ApduFormatError("extended Lc does not match the length")
