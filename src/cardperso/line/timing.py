"""Modeled machine time: what each station of the line would take, and the line's rate.

The line runs as fast as the host allows; *machine* time is modeled, from physical
figures (DESIGN.md §5). Chip time is the reader's own ``elapsed`` (the card
model's I/O at the negotiated rate, CPU, EEPROM page writes and on-card crypto,
docs/card-os.md §9) plus the security module's round trips. Every other station
gets a duration from :class:`LineTiming`, whose parameters are listed with their
source or reasoning below. None was tuned to reach a throughput.

==========================  =========  ==========================================================
parameter                   value      source or reasoning
==========================  =========  ==========================================================
``card_length_mm``          85.60      ISO/IEC 7810 ID-1 card (85.60 x 53.98 mm)
``transport_mm_s``          500        belt/roller card transport between stations: a card pitch
                                       (card plus gap) in a fifth of a second, the order of a desk
                                       card printer's transport (0.3-0.6 m/s); an estimate
``pitch_mm``                100        one card length plus a 14 mm gap between cards
``settle_s``                0.05       stop and register the card at a station (sensor + brake)
``feeder_check_s``          0.02       double-feed (thickness) check after the pick
``contact_s``               0.05       lower (or lift) the contact head of a chip module; each
                                       card pays it twice
``hsm_call_s``              0.0005     one security-module command: a LAN round trip (0.1-0.3 ms)
                                       plus a symmetric command inside the module; an estimate
``stripe_mm_s``             508        magnetic-stripe head speed (20 in/s): at 210 bpi (track 1,
                                       ISO/IEC 7811-2) that is 4.2 kflux/s, well inside reader
                                       electronics; one write pass and one read-back pass
``stripe_reverse_s``        0.05       stop and reverse between the write and the read pass
``emboss_char_s``           0.05       one embossed character: the wheel turns to the character's
                                       punch-and-die pair and a hammer strikes (US 4,088,216
                                       describes the rotating-wheel embosser); a 20 Hz strike
                                       cycle is the order of a solenoid hammer; spaces only move
``emboss_line_s``           0.10       move the card to the next embossing line
``laser_mm_s``              1000       galvanometer-scanner marking speed for vector text in card
                                       polycarbonate; an order-of-magnitude estimate
``laser_stroke_per_mm``     4.0        stroke length per character per mm of character height
                                       (a character is drawn with strokes about four times its
                                       height in total)
``laser_jump_s``            0.002      scanner jump between characters
``photo_line_mm``           0.10       raster line pitch of an engraved photo (254 lines/inch)
``photo_turn_s``            0.002      scanner turnaround between raster lines
``camera_s``                0.10       QC camera: exposure, frame transfer and compare
==========================  =========  ==========================================================

Every station also pays one transport index (``pitch_mm / transport_mm_s +
settle_s``) to receive its card. A chip module pays the index, the contact head
twice, and its chip time.

The pipeline (:func:`pipeline`): the card passes feeder -> one of N chip modules ->
magnetic stripe -> embosser/laser -> QC -> stacker; every station holds one card,
the N modules work in parallel, and buffers between stations keep the slowest one
busy. For a run of cards with their modeled durations the makespan is computed
card by card (a flow shop with one parallel stage); the rate is cards per hour of
makespan, and the *limiting station* is the one with the highest mean load per
card (its mean busy time divided by its number of machines).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CHIP",
    "FEEDER",
    "MAGSTRIPE",
    "QC",
    "STACKER",
    "STATIONS",
    "VISUAL",
    "LineTiming",
    "PipelineResult",
    "pipeline",
]

FEEDER, CHIP, MAGSTRIPE, VISUAL, QC, STACKER = (
    "feeder",
    "chip",
    "magstripe",
    "visual",
    "qc",
    "stacker",
)
STATIONS: tuple[str, ...] = (FEEDER, CHIP, MAGSTRIPE, VISUAL, QC, STACKER)
"""The line's stages in card order; ``chip`` is the stage of N parallel modules."""


@dataclass(frozen=True, slots=True)
class LineTiming:
    """Physical parameters of the line (see the module notes for each source)."""

    card_length_mm: float = 85.60
    transport_mm_s: float = 500.0
    pitch_mm: float = 100.0
    settle_s: float = 0.05
    feeder_check_s: float = 0.02
    contact_s: float = 0.05
    hsm_call_s: float = 0.0005
    stripe_mm_s: float = 508.0
    stripe_reverse_s: float = 0.05
    emboss_char_s: float = 0.05
    emboss_line_s: float = 0.10
    laser_mm_s: float = 1000.0
    laser_stroke_per_mm: float = 4.0
    laser_jump_s: float = 0.002
    photo_line_mm: float = 0.10
    photo_turn_s: float = 0.002
    camera_s: float = 0.10

    @property
    def index_s(self) -> float:
        """Receive a card from the previous station and register it."""
        return self.pitch_mm / self.transport_mm_s + self.settle_s

    def feeder(self) -> float:
        """Pick one card off the hopper (its length at transport speed) and check it."""
        return self.card_length_mm / self.transport_mm_s + self.feeder_check_s + self.settle_s

    def chip(self, card_elapsed_s: float, hsm_calls: int) -> float:
        """A chip module's time for one card: transport in, contacts, chip, HSM."""
        return self.index_s + 2 * self.contact_s + card_elapsed_s + hsm_calls * self.hsm_call_s

    def magstripe(self, tracks: int) -> float:
        """Write pass and read-back pass over the card's length (nothing if no stripe)."""
        if tracks == 0:
            return self.index_s
        one_pass = self.card_length_mm / self.stripe_mm_s
        return self.index_s + 2 * one_pass + self.stripe_reverse_s

    def visual(
        self,
        emboss: Sequence[str],
        laser: Sequence[tuple[float, str]],
        photo_mm: tuple[float, float] | None,
    ) -> float:
        """Embossed lines (text), engraved texts ((height mm, text)), photo (w, h mm)."""
        t = self.index_s
        for line in emboss:
            strikes = sum(1 for ch in line if not ch.isspace())
            t += self.emboss_line_s + strikes * self.emboss_char_s
        for height, text in laser:
            chars = sum(1 for ch in text if not ch.isspace())
            t += chars * (height * self.laser_stroke_per_mm / self.laser_mm_s + self.laser_jump_s)
        if photo_mm is not None:
            width, height = photo_mm
            lines = height / self.photo_line_mm
            t += lines * (width / self.laser_mm_s + self.photo_turn_s)
        return t

    def qc(self) -> float:
        return self.index_s + self.camera_s

    def stacker(self) -> float:
        return self.index_s


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """Modeled throughput of a run of cards through the line with ``modules`` modules."""

    modules: int
    cards: int
    makespan_s: float
    cards_per_hour: float
    limiting_station: str
    station_load_s: dict[str, float]
    """Mean busy seconds per card of each stage, divided by its number of machines."""

    def as_dict(self) -> dict[str, object]:
        return {
            "modules": self.modules,
            "cards": self.cards,
            "makespan_s": round(self.makespan_s, 3),
            "cards_per_hour": round(self.cards_per_hour, 1),
            "limiting_station": self.limiting_station,
            "station_load_s": {k: round(v, 4) for k, v in self.station_load_s.items()},
        }


def pipeline(cards: Sequence[Mapping[str, float]], modules: int) -> PipelineResult:
    """Makespan of ``cards`` (each: stage -> seconds) through the line with ``modules``.

    Cards enter in order; each stage takes the card as soon as the card has left
    the previous stage and the stage (for ``chip``: the earliest free module) is
    free. Buffers between stages are unbounded, which is how the line keeps its
    slowest station busy. A stage a card skips (a card rejected at its chip module
    goes straight to the reject bin) has no entry in that card's mapping.
    """
    if modules < 1:
        raise ValueError("a line needs at least one chip module")
    free = {s: 0.0 for s in STATIONS if s != CHIP}
    chip_free = [0.0] * modules
    heapq.heapify(chip_free)
    busy = dict.fromkeys(STATIONS, 0.0)
    end = 0.0
    for card in cards:
        t = 0.0
        for stage in STATIONS:
            d = card.get(stage)
            if d is None:
                continue
            busy[stage] += d
            if stage == CHIP:
                start = max(t, heapq.heappop(chip_free))
                t = start + d
                heapq.heappush(chip_free, t)
            else:
                start = max(t, free[stage])
                t = start + d
                free[stage] = t
        end = max(end, t)
    n = len(cards)
    load = {s: (busy[s] / (modules if s == CHIP else 1)) / max(n, 1) for s in STATIONS}
    limiting = max(STATIONS, key=lambda s: load[s])
    rate = n / end * 3600.0 if end > 0 else 0.0
    return PipelineResult(modules, n, end, rate, limiting, load)
