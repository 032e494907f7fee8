"""Magnetic stripe tracks 1 and 2 of a financial card (ISO/IEC 7813, ISO/IEC 7811-2).

Record layouts (ISO/IEC 7813, track 1 format B and track 2)::

    track 1:  %  B  PAN  ^  NAME  ^  YYMM|^  SC|^  DD  ?  LRC      <= 79 characters
    track 2:  ;     PAN  =        YYMM|=  SC|=  DD  ?  LRC      <= 40 characters

PAN up to 19 digits (ISO/IEC 7812-1), name 2 to 26 characters (surname ``/`` given
names), expiry YYMM, three-digit service code, then discretionary data to fill.
The maximum lengths count every character including the sentinels and the LRC.

Character coding (ISO/IEC 7811-2 §"Encoding technique", alphanumeric and numeric
character sets): track 1 uses 6 data bits per character (code = ASCII - 0x20,
characters 0x20-0x5F), track 2 uses 4 data bits (code = ASCII - 0x30, characters
0x30-0x3F). Each character is followed by an odd-parity bit and is written least
significant bit first. The LRC character's data bits make the count of ones in
each bit position, over start sentinel to end sentinel plus the LRC itself, even;
its parity bit is odd parity over the LRC character alone. Worked examples of both
rules: MagTek, "I/O Interface for TTL Magnetic Stripe Readers", Technical Reference
Manual, §"Track 1 data format" (message ``%AT3?``, LRC ``<``) and §3 "LRC
calculation" (``;0?`` -> ``4``, ``;01?`` -> ``5``, ``;0123?`` -> ``4``).

Writing: :func:`build_track1` / :func:`build_track2` give the character record,
:func:`encode_bits` the bit stream as the head writes it. Reading back:
:func:`decode_bits` checks parity, sentinels and LRC (either swipe direction) and
:func:`parse_track1` / :func:`parse_track2` the record layout. Every failure on the
read path is a :class:`MagstripeError` subclass naming what failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cardperso.errors import CardpersoError
from cardperso.profiles.schema import Discretionary, DiscretionaryKind, Magstripe

__all__ = [
    "TRACK1_MAX",
    "TRACK2_MAX",
    "LrcError",
    "MagstripeError",
    "ParityError",
    "SentinelError",
    "TrackData",
    "TrackFormatError",
    "build_track1",
    "build_track2",
    "decode_bits",
    "discretionary_data",
    "encode_bits",
    "lrc",
    "parse_track1",
    "parse_track2",
    "track2_equivalent_data",
    "tracks_from_profile",
]

TRACK1_MAX = 79
"""ISO/IEC 7813: track 1 record length, sentinels and LRC included."""
TRACK2_MAX = 40
"""ISO/IEC 7813: track 2 record length, sentinels and LRC included."""
NAME_MAX = 26
"""ISO/IEC 7813: longest track-1 name."""

_T1_NAME = re.compile(r"[A-Z0-9 .\-/]{2,26}")
_T1_DD = re.compile(r"[\x20-\x5F]*")
_T1 = re.compile(r"%B([0-9]{1,19})\^([^^]{2,26})\^([0-9]{4}|\^)([0-9]{3}|\^)([^?]*)\?")
_T2 = re.compile(r";([0-9]{1,19})=([0-9]{4}|=)([0-9]{3}|=)([0-9]*)\?")
_PAN = re.compile(r"[0-9]{1,19}")
_YYMM = re.compile(r"[0-9]{4}")
_SERVICE_CODE = re.compile(r"[0-9]{3}")
_DIGITS = re.compile(r"[0-9]*")


class MagstripeError(CardpersoError, ValueError):
    """A track that cannot be built or read back."""


class TrackFormatError(MagstripeError):
    """A field or the record layout breaks ISO/IEC 7813."""


class SentinelError(MagstripeError):
    """No start sentinel, or no end sentinel before the bits ran out."""


class ParityError(MagstripeError):
    """A character's odd-parity bit is wrong; ``position`` counts from 1 (the SS)."""

    def __init__(self, position: int, what: str = "character") -> None:
        self.position = position
        super().__init__(f"{what} {position} fails the odd-parity check (ISO/IEC 7811-2)")


class LrcError(MagstripeError):
    """The longitudinal redundancy check does not match the data."""


@dataclass(frozen=True, slots=True)
class TrackData:
    """The fields of a track 1 or track 2 record; absent expiry/service code are None."""

    pan: str
    expiry: str | None
    service_code: str | None
    discretionary: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class _Coding:
    bits: int
    base: int
    ss: str
    fs: str
    maximum: int


_TRACK1 = _Coding(6, 0x20, "%", "^", TRACK1_MAX)
_TRACK2 = _Coding(4, 0x30, ";", "=", TRACK2_MAX)


def _coding(track: str) -> _Coding:
    if track.startswith("%"):
        return _TRACK1
    if track.startswith(";"):
        return _TRACK2
    raise TrackFormatError("a track starts with '%' (track 1) or ';' (track 2)")


def _code(ch: str, c: _Coding) -> int:
    v = ord(ch) - c.base
    if not 0 <= v < 1 << c.bits:
        kind = "track 1 (6-bit)" if c is _TRACK1 else "track 2 (4-bit)"
        raise TrackFormatError(f"character U+{ord(ch):04X} is not in the {kind} character set")
    return v


def _parity(v: int) -> int:
    """Odd-parity bit for the data bits of ``v``."""
    return 0 if v.bit_count() % 2 else 1


def lrc(track: str) -> str:
    """The LRC character of a track record (start sentinel to end sentinel)."""
    c = _coding(track)
    x = 0
    for ch in track:
        x ^= _code(ch, c)
    return chr(x + c.base)


# -- building ---------------------------------------------------------------------


def _check_common(pan: str, expiry: str | None, service_code: str | None) -> None:
    if not _PAN.fullmatch(pan):
        raise TrackFormatError("PAN must be 1 to 19 digits (ISO/IEC 7813)")
    if expiry is not None and not _YYMM.fullmatch(expiry):
        raise TrackFormatError("expiry must be YYMM")
    if service_code is not None and not _SERVICE_CODE.fullmatch(service_code):
        raise TrackFormatError("service code must be 3 digits")


def _check_length(track: str, c: _Coding, number: int) -> str:
    if len(track) + 1 > c.maximum:
        raise TrackFormatError(
            f"track {number} would be {len(track) + 1} characters with its LRC; "
            f"ISO/IEC 7813 allows {c.maximum}"
        )
    return track


def build_track1(
    pan: str, name: str, expiry: str | None, service_code: str | None, discretionary: str = ""
) -> str:
    """Track 1 format B record from start to end sentinel (the LRC is :func:`lrc`)."""
    _check_common(pan, expiry, service_code)
    if not _T1_NAME.fullmatch(name):
        raise TrackFormatError(
            "name must be 2 to 26 characters of A-Z, 0-9, space, '.', '-', '/' (ISO/IEC 7813)"
        )
    if not _T1_DD.fullmatch(discretionary) or any(ch in "%^?" for ch in discretionary):
        raise TrackFormatError("track 1 discretionary data holds 6-bit characters except % ^ ?")
    track = f"%B{pan}^{name}^{expiry or '^'}{service_code or '^'}{discretionary}?"
    return _check_length(track, _TRACK1, 1)


def build_track2(
    pan: str, expiry: str | None, service_code: str | None, discretionary: str = ""
) -> str:
    """Track 2 record from start to end sentinel (the LRC is :func:`lrc`)."""
    _check_common(pan, expiry, service_code)
    if not _DIGITS.fullmatch(discretionary):
        raise TrackFormatError("track 2 discretionary data must be digits")
    track = f";{pan}={expiry or '='}{service_code or '='}{discretionary}?"
    return _check_length(track, _TRACK2, 2)


def track2_equivalent_data(
    pan: str, expiry: str, service_code: str, discretionary: str = ""
) -> bytes:
    """EMV tag 57 value: PAN, separator D, YYMM, service code, DD, F-padded to whole bytes
    (EMV 4.4 Book 3 Annex A, "Track 2 Equivalent Data"; at most 19 bytes)."""
    _check_common(pan, expiry, service_code)
    if not _DIGITS.fullmatch(discretionary):
        raise TrackFormatError("track 2 discretionary data must be digits")
    nibbles = f"{pan}D{expiry}{service_code}{discretionary}"
    if len(nibbles) % 2:
        nibbles += "F"
    if len(nibbles) > 38:
        raise TrackFormatError("Track 2 Equivalent Data is limited to 19 bytes")
    return bytes.fromhex(nibbles)


def encode_bits(track: str, clocking: int = 0) -> str:
    """The bit stream written on the stripe: ``clocking`` zeros, each character's data
    bits least significant first then its odd-parity bit, the LRC, ``clocking`` zeros."""
    c = _coding(track)
    out: list[str] = ["0" * clocking]
    for ch in (*track, lrc(track)):
        v = _code(ch, c)
        out.append("".join(str(v >> i & 1) for i in range(c.bits)) + str(_parity(v)))
    out.append("0" * clocking)
    return "".join(out)


# -- reading back -----------------------------------------------------------------


def _decode_direction(bits: str, c: _Coding) -> str:
    width = c.bits + 1
    start = bits.find("1")
    if start < 0:
        raise SentinelError("no data: the track holds only clocking zeros")
    chars: list[str] = []
    x = 0
    pos = start
    while True:
        chunk = bits[pos : pos + width]
        if len(chunk) < width:
            raise SentinelError("no end sentinel before the end of the track")
        v = int(chunk[: c.bits][::-1], 2)
        if int(chunk[c.bits]) != _parity(v):
            raise ParityError(len(chars) + 1)
        ch = chr(v + c.base)
        if not chars and ch != c.ss:
            raise SentinelError(f"no start sentinel '{c.ss}' where the data begins")
        chars.append(ch)
        x ^= v
        pos += width
        if ch == "?":
            break
    chunk = bits[pos : pos + width]
    if len(chunk) < width:
        raise LrcError("the track ends before its LRC character")
    v = int(chunk[: c.bits][::-1], 2)
    if int(chunk[c.bits]) != _parity(v):
        raise ParityError(len(chars) + 1, "LRC character")
    if v != x:
        raise LrcError("LRC does not match the data (ISO/IEC 7811-2)")
    if "1" in bits[pos + width :]:
        # only clocking zeros may follow the LRC; anything else means this was not a
        # record (e.g. a sentinel pattern found by chance in a reversed swipe)
        raise SentinelError("data continues after the LRC character")
    return "".join(chars)


def decode_bits(bits: str, track: int) -> str:
    """Read a track's bit stream back to its record (start to end sentinel).

    Checks every parity bit, both sentinels, the LRC, and that only clocking zeros
    follow the LRC. A card swiped the other
    way round gives the bits reversed; if the forward reading fails, the reversed
    stream is tried, and if that fails too the forward reading's error is raised.
    """
    if track not in (1, 2):
        raise ValueError("track must be 1 or 2")
    if not re.fullmatch(r"[01]*", bits):
        raise ValueError("bits must be a string of 0 and 1")
    c = _TRACK1 if track == 1 else _TRACK2
    try:
        return _decode_direction(bits, c)
    except MagstripeError:
        try:
            return _decode_direction(bits[::-1], c)
        except MagstripeError:
            pass
        raise


def parse_track1(text: str) -> TrackData:
    """Split a track 1 format B record ``%B...?`` into its fields."""
    m = _T1.fullmatch(text)
    if not m:
        raise TrackFormatError("not a track 1 format B record (ISO/IEC 7813)")
    pan, name, ed, sc, dd = m.groups()
    return TrackData(pan, None if ed == "^" else ed, None if sc == "^" else sc, dd, name)


def parse_track2(text: str) -> TrackData:
    """Split a track 2 record ``;...?`` into its fields."""
    m = _T2.fullmatch(text)
    if not m:
        raise TrackFormatError("not a track 2 record (ISO/IEC 7813)")
    pan, ed, sc, dd = m.groups()
    return TrackData(pan, None if ed == "=" else ed, None if sc == "=" else sc, dd)


# -- from a profile ---------------------------------------------------------------


def discretionary_data(
    items: Sequence[Discretionary],
    values: Mapping[str, str],
    computed: Mapping[str, str],
    chip: bool = False,
) -> str:
    """Discretionary data of a profile, in order.

    ``computed`` holds what the security module produced for this card:
    ``"pvv:<PIN name>"`` (4 digits) and ``"cvv"`` (3 digits; ``"icvv"`` for the chip's
    track data when ``chip`` is true). The PVKI digit precedes its PVV.
    """
    out: list[str] = []
    for d in items:
        if d.kind == DiscretionaryKind.LITERAL:
            out.append(d.value or "")
        elif d.kind == DiscretionaryKind.FIELD:
            out.append(values.get(d.field or "", ""))
        elif d.kind == DiscretionaryKind.PVV:
            out.append((d.pvki or "") + _computed(computed, f"pvv:{d.pin}"))
        else:
            out.append(_computed(computed, "icvv" if chip else "cvv"))
    return "".join(out)


def _computed(computed: Mapping[str, str], key: str) -> str:
    if key not in computed:
        raise KeyError(f"value {key!r} has not been computed for this card")
    return computed[key]


def tracks_from_profile(
    spec: Magstripe, values: Mapping[str, str], computed: Mapping[str, str]
) -> dict[int, str]:
    """Track records (start to end sentinel) for the tracks a profile writes.

    The name is the rendered ``spec.name`` template cut to the 26 characters
    ISO/IEC 7813 allows (names are cut, never refused, on the stripe).
    """
    from cardperso.dataprep.text import render

    pan, expiry = values[spec.pan_field], values[spec.expiry_field]
    dd = discretionary_data(spec.discretionary, values, computed)
    out: dict[int, str] = {}
    if 1 in spec.tracks:
        name = render(spec.name, values)[:NAME_MAX].rstrip()
        out[1] = build_track1(pan, name, expiry, spec.service_code, dd)
    if 2 in spec.tracks:
        out[2] = build_track2(pan, expiry, spec.service_code, dd)
    return out
