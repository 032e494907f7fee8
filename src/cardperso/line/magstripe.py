"""The magnetic-stripe station: encode each track, read it back, compare.

The encoder writes a track as the flux-reversal bit stream of ISO/IEC 7811-2
(:func:`cardperso.dataprep.magstripe.encode_bits`, with leading and trailing
clocking zeros), then the read head reads it back and the station checks, in order:

1. the signal: every character's parity bit, the start sentinel (``%`` on track 1,
   ``;`` on track 2) where the data begins, the end sentinel ``?``, the LRC after it
   and nothing but clocking zeros after that
   (:func:`~cardperso.dataprep.magstripe.decode_bits`);
2. the format (ISO/IEC 7813): format code ``B`` and the ``^`` field separators of
   track 1, the ``=`` separators of track 2, field lengths and character sets
   (:func:`~cardperso.dataprep.magstripe.parse_track1` / ``parse_track2``), and the
   PAN's Luhn check digit (ISO/IEC 7812-1);
3. the content against the production database (the prepared track): PAN, name,
   expiry, service code and discretionary data one by one - the reason names the
   field, never its value - then the whole record;
4. the tracks against each other: the same PAN, expiry and service code on both.

Any failure rejects the card.

:class:`SimulatedStripe` stands for the card's stripe: a dictionary of written
bit streams. A :data:`StripeFault` hook (tests) may damage a stream between the
write and the read, as a bad head or a scratched stripe would.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cardperso.dataprep.magstripe import (
    MagstripeError,
    TrackData,
    decode_bits,
    encode_bits,
    parse_track1,
    parse_track2,
)

__all__ = [
    "CLOCKING_BITS",
    "SimulatedStripe",
    "StripeCheck",
    "StripeFault",
    "check_track",
    "encode_and_verify",
]

CLOCKING_BITS = 24
"""Leading and trailing zeros the encoder writes so the reader can lock on (7811-2)."""

StripeFault = Callable[[str, int, str], str]
"""(chip serial, track number, written bits) -> the bits the read head sees."""


@dataclass
class SimulatedStripe:
    """The magnetic stripe of one physical card."""

    tracks: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StripeCheck:
    """What the read-back found: ``ok`` and, if not, why (no track content quoted)."""

    ok: bool
    reason: str = ""
    pan: str | None = None
    """The PAN read back from track 2 (else track 1), for QC's cross-check."""


def _luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_FIELDS = ("pan", "name", "expiry", "service_code", "discretionary")
_FIELD_NAMES = {
    "pan": "PAN",
    "name": "name",
    "expiry": "expiry date",
    "service_code": "service code",
    "discretionary": "discretionary data",
}


def check_track(number: int, seen: str, expected: str) -> tuple[str, TrackData | None]:
    """Check the bits read from track ``number`` against the prepared record: ("", data)
    or (why, None). ``seen`` is the bit stream the head read."""
    try:
        back = decode_bits(seen, number)
    except (MagstripeError, ValueError) as e:
        return f"track {number} read-back: {e}", None
    parse = parse_track1 if number == 1 else parse_track2
    try:
        data = parse(back)
    except MagstripeError as e:
        return f"track {number} read-back format: {e}", None
    if not _luhn_ok(data.pan):
        return f"track {number} read-back: the PAN fails its Luhn check (ISO/IEC 7812-1)", None
    try:
        want = parse(expected)
    except MagstripeError:  # pragma: no cover - data preparation built it
        return f"track {number}: the prepared track is not a valid record", None
    for name in _FIELDS:
        if getattr(data, name) != getattr(want, name):
            return (
                f"track {number} read-back: the {_FIELD_NAMES[name]} differs from the database",
                None,
            )
    if not hmac.compare_digest(back.encode("ascii"), expected.encode("ascii")):
        return f"track {number} read back differs from the prepared track", None
    return "", data


def encode_and_verify(
    stripe: SimulatedStripe,
    tracks: Mapping[int, str],
    *,
    serial: str = "",
    fault: StripeFault | None = None,
) -> StripeCheck:
    """Write every prepared track, read each back and check it (see the module notes)."""
    read: dict[int, TrackData] = {}
    for number in sorted(tracks):
        text = tracks[number]
        try:
            bits = encode_bits(text, CLOCKING_BITS)
        except (MagstripeError, ValueError) as e:
            return StripeCheck(False, f"track {number} cannot be encoded: {e}")
        stripe.tracks[number] = bits
        seen = fault(serial, number, bits) if fault is not None else bits
        why, data = check_track(number, seen, text)
        if data is None:
            return StripeCheck(False, why)
        read[number] = data
    if 1 in read and 2 in read:
        t1, t2 = read[1], read[2]
        for name in ("pan", "expiry", "service_code"):
            if getattr(t1, name) != getattr(t2, name):
                return StripeCheck(False, f"tracks 1 and 2 disagree on the {_FIELD_NAMES[name]}")
    first = read.get(2) or read.get(1)
    return StripeCheck(True, pan=first.pan if first is not None else None)
