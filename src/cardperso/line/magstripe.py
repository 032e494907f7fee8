"""The magnetic-stripe station: encode each track, read it back, compare.

The encoder writes a track as the flux-reversal bit stream of ISO/IEC 7811-2
(:func:`cardperso.dataprep.magstripe.encode_bits`, with leading and trailing
clocking zeros), then the read head reads it back and the station decodes it
(parity, sentinels, LRC, :func:`~cardperso.dataprep.magstripe.decode_bits`),
checks the record layout (ISO/IEC 7813) and compares it with the prepared track.
Any difference rejects the card.

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
    decode_bits,
    encode_bits,
    parse_track1,
    parse_track2,
)

__all__ = ["CLOCKING_BITS", "SimulatedStripe", "StripeCheck", "StripeFault", "encode_and_verify"]

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


def encode_and_verify(
    stripe: SimulatedStripe,
    tracks: Mapping[int, str],
    *,
    serial: str = "",
    fault: StripeFault | None = None,
) -> StripeCheck:
    """Write every prepared track, read each back and compare it with what was meant."""
    pan: str | None = None
    for number in sorted(tracks):
        text = tracks[number]
        try:
            bits = encode_bits(text, CLOCKING_BITS)
        except (MagstripeError, ValueError) as e:
            return StripeCheck(False, f"track {number} cannot be encoded: {e}")
        stripe.tracks[number] = bits
        seen = fault(serial, number, bits) if fault is not None else bits
        try:
            back = decode_bits(seen, number)
            data = parse_track1(back) if number == 1 else parse_track2(back)
        except (MagstripeError, ValueError) as e:
            return StripeCheck(False, f"track {number} read-back: {e}")
        if not hmac.compare_digest(back.encode("ascii"), text.encode("ascii")):
            return StripeCheck(False, f"track {number} read back differs from the prepared track")
        if number == 2 or pan is None:
            pan = data.pan
    return StripeCheck(True, pan=pan)
