"""The inserter and its scale, simulated: fold, attach, insert, weigh, divert, frank.

What a real inserter line does with each carrier: the sheet is folded, the card is
attached at its place (a reader at the attach station reads the chip serial of the
card it attaches and compares it with the one in the sheet's Code 128), the piece is
inserted and sealed, then weighed; a piece off its expected weight by more than the
tolerance is diverted - "the weight of the card, which is around 6 grams, is easily
sufficient to ensure reliable verification that each envelope actually contains a
card" (the chapter). PIN mailers go through their own inserter, with no card station
at all, and are weighed the same way: a card that strayed into a PIN mailer envelope
makes it 6 g heavy and it is diverted, so a card and its PIN never leave in one
envelope.

The simulation draws each real weight (paper, envelope, card) uniformly within its
spread around the nominal, from a generator seeded by the settings' seed and the
envelope id, and rounds to the scale's resolution: a run is repeatable, and since
:class:`~cardperso.lettershop.config.Weights` only accepts a tolerance that lies
between the worst spread of a correct piece and one card less that spread, every
missing or doubled card is caught and no correct piece is diverted - by construction,
which the tests then confirm on many pieces.

Faults (:class:`Fault`) are injected from outside, the way tests and drills need them.
The franking machine then takes the postage class from the weight.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cardperso.lettershop.config import PostageClass, Weights
from cardperso.lettershop.pieces import Piece, PieceKind, PieceStatus, parse_carrier_code

__all__ = ["Contents", "Fault", "Inserter", "contents_for"]


class Fault(StrEnum):
    """What can go wrong at an inserter (injected by tests and drills)."""

    MISSING_CARD = "missing_card"
    """Carrier: the card was not attached (or fell off)."""
    DOUBLE_CARD = "double_card"
    """Carrier: a second card stuck to the first."""
    WRONG_CARD = "wrong_card"
    """Carrier: another record's card attached."""
    CARD_IN_MAILER = "card_in_mailer"
    """PIN mailer: a card got into the envelope."""
    EXTRA_SHEET = "extra_sheet"
    """Any: two sheets pulled at once."""


@dataclass(frozen=True, slots=True)
class Contents:
    """What physically goes into one envelope."""

    sheets: int
    cards: tuple[str, ...]
    """Chip serials of the cards in it, the attached one first ("" for an unread card)."""


def contents_for(piece: Piece, fault: Fault | None, other_serial: str = "") -> Contents:
    """The envelope's contents for ``piece`` with ``fault`` injected (None: correct)."""
    carrier = piece.kind is not PieceKind.PIN_MAILER
    cards: tuple[str, ...] = (piece.chip_serial,) if carrier else ()
    sheets = 1
    if fault is Fault.MISSING_CARD:
        cards = ()
    elif fault is Fault.DOUBLE_CARD:
        cards = (piece.chip_serial, other_serial)
    elif fault is Fault.WRONG_CARD:
        cards = (other_serial,)
    elif fault is Fault.CARD_IN_MAILER:
        cards = (other_serial or piece.chip_serial,)
    elif fault is Fault.EXTRA_SHEET:
        sheets = 2
    return Contents(sheets, cards)


class Inserter:
    """Folds, inserts, weighs and franks pieces; diverts the wrong ones."""

    def __init__(self, weights: Weights, postage: Sequence[PostageClass], seed: str) -> None:
        self.w = weights
        self.postage = tuple(postage)
        self.seed = seed
        self.diverted = 0
        self.weighed = 0

    def _envelope_g(self, kind: PieceKind) -> float:
        w = self.w
        return w.mailer_envelope_g if kind is PieceKind.PIN_MAILER else w.carrier_envelope_g

    def expected_g(self, kind: PieceKind) -> float:
        """The nominal weight of a correct piece of this kind."""
        w = self.w
        g = self._envelope_g(kind) + w.sheet_g
        if kind is not PieceKind.PIN_MAILER:
            g += w.card_g + w.adhesive_g
        return g

    def weigh(self, piece: Piece, contents: Contents) -> float:
        """What the scale shows for this envelope (simulated, repeatable)."""
        w = self.w
        rng = random.Random(f"{self.seed}/{piece.envelope}")  # noqa: S311 - a simulation

        def real(nominal: float, spread: float) -> float:
            return nominal + rng.uniform(-spread, spread)

        g = real(self._envelope_g(piece.kind), w.envelope_spread_g)
        g += sum(real(w.sheet_g, w.sheet_spread_g) for _ in range(contents.sheets))
        g += sum(real(w.card_g, w.card_spread_g) for _ in contents.cards)
        if piece.kind is not PieceKind.PIN_MAILER:
            g += w.adhesive_g  # the glue dot is on the sheet
        steps = round(g / w.scale_resolution_g)
        return round(steps * w.scale_resolution_g, 3)

    def _explain(self, kind: PieceKind, off: float) -> str:
        """Words for a weight ``off`` grams from the expected one: what a card or a sheet
        too many or too few would show (both, where their spreads overlap)."""
        w = self.w
        window = w.worst_noise_g(sheets=2, cards=2)
        mailer = kind is PieceKind.PIN_MAILER
        card = abs(abs(off) - w.card_g) <= window and not (mailer and off < 0)
        sheet = abs(abs(off) - w.sheet_g) <= window
        if off < 0:
            causes = ["card missing"] * card + ["sheet missing"] * sheet
            head = f"underweight by {-off:.1f} g"
        else:
            causes = (["a card in a PIN mailer" if mailer else "a second card"] * card) + [
                "a second sheet"
            ] * sheet
            head = f"overweight by {off:.1f} g"
        return f"{head} ({' or '.join(causes) or 'unexplained'})"

    def run(self, piece: Piece, contents: Contents) -> None:
        """Put one piece through: matching, weighing, franking; sets its outcome."""
        reasons: list[str] = []
        if piece.kind is not PieceKind.PIN_MAILER and contents.cards:
            code = parse_carrier_code(piece.code) if piece.kind is PieceKind.CARRIER else None
            want = code[2] if code else piece.chip_serial
            if contents.cards[0] != want:
                reasons.append("the attached card does not match the carrier's code")
        piece.expected_g = self.expected_g(piece.kind)
        piece.weight_g = self.weigh(piece, contents)
        self.weighed += 1
        off = piece.weight_g - piece.expected_g
        if abs(off) > self.w.tolerance_g:
            reasons.append(self._explain(piece.kind, off))
        cls = next((c for c in self.postage if piece.weight_g <= c.max_g), None)
        if cls is None:
            reasons.append(f"{piece.weight_g:.1f} g is over every postage class")
        else:
            piece.postage_class, piece.price = cls.name, cls.price
        if reasons:
            piece.status = PieceStatus.DIVERTED
            piece.reason = "; ".join(reasons)
            piece.postage_class, piece.price = "", 0
            self.diverted += 1
