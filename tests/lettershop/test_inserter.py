"""The inserter's scale: every missing or doubled card caught, no good piece diverted.

Many simulated pieces (no PDF, no database): carriers with a card each and PIN
mailers with none, a share of them with an injected fault. The tolerance the settings
accept lies between the worst spread of a correct piece and one card less that spread,
so this must hold for every seed and every piece, not on average.
"""

from __future__ import annotations

import random
from datetime import date

import pytest

from cardperso.lettershop.config import PostageClass, Weights
from cardperso.lettershop.inserter import Fault, Inserter, contents_for
from cardperso.lettershop.pieces import Piece, PieceKind, PieceStatus, carrier_code

DAY = date(2026, 3, 9)
CARRIER_FAULTS = (Fault.MISSING_CARD, Fault.DOUBLE_CARD)
MAILER_FAULTS = (Fault.CARD_IN_MAILER,)


def carrier(n: int) -> Piece:
    serial = f"823C5DA9{n:08X}"
    return Piece(
        PieceKind.CARRIER,
        f"C1-{n:07d}",
        f"B/{n:07d}",
        n,
        "DE",
        "80",
        "331",
        DAY,
        chip_serial=serial,
        code=carrier_code(1, n, serial),
    )


def mailer(n: int) -> Piece:
    return Piece(PieceKind.PIN_MAILER, f"M1-{n:07d}", f"B/{n:07d}", n, "DE", "80", "331", DAY)


@pytest.mark.parametrize("seed", ["a", "b", "c"])
def test_every_injected_missing_or_double_card_is_caught_and_nothing_else(seed: str) -> None:
    rng = random.Random(seed)
    inserter = Inserter(Weights(), (PostageClass(name="std", max_g=50, price=95),), seed)
    injected: dict[str, Fault] = {}
    pieces = []
    for n in range(1, 4001):
        kind = PieceKind.CARRIER if n % 2 else PieceKind.PIN_MAILER
        p = carrier(n) if kind is PieceKind.CARRIER else mailer(n)
        fault = None
        if rng.random() < 0.1:
            fault = rng.choice(CARRIER_FAULTS if kind is PieceKind.CARRIER else MAILER_FAULTS)
            injected[p.envelope] = fault
        inserter.run(p, contents_for(p, fault, other_serial="823C5DA9FFFFFFFF"))
        pieces.append(p)
    diverted = {p.envelope for p in pieces if p.status is PieceStatus.DIVERTED}
    assert diverted == set(injected)  # 100 % caught, no false diversion
    assert len(injected) > 300
    for p in pieces:
        fault = injected.get(p.envelope)
        if fault is Fault.MISSING_CARD:
            assert "underweight" in p.reason and "card missing" in p.reason
        elif fault is Fault.DOUBLE_CARD:
            assert "overweight" in p.reason and "second card" in p.reason
        elif fault is Fault.CARD_IN_MAILER:
            assert "a card in a PIN mailer" in p.reason
        else:
            assert p.reason == "" and abs(p.weight_g - p.expected_g) < inserter.w.tolerance_g
            assert p.postage_class == "std" and p.price == 95


def test_a_clean_run_diverts_nothing_even_at_the_limits_of_every_spread() -> None:
    w = Weights()
    inserter = Inserter(w, (PostageClass(name="std", max_g=50, price=95),), "clean")
    pieces = [carrier(n) if n % 3 else mailer(n) for n in range(1, 3001)]
    for p in pieces:
        inserter.run(p, contents_for(p, None))
    assert all(p.status is PieceStatus.DISPATCHED for p in pieces)
    worst = max(abs(p.weight_g - p.expected_g) for p in pieces)
    assert worst <= w.worst_noise_g() + 1e-9


def test_a_wrong_card_on_a_carrier_is_caught_by_the_code_not_the_scale() -> None:
    inserter = Inserter(Weights(), (PostageClass(name="std", max_g=50, price=95),), "s")
    p = carrier(7)
    inserter.run(p, contents_for(p, Fault.WRONG_CARD, other_serial="823C5DA900000008"))
    assert p.status is PieceStatus.DIVERTED
    assert p.reason == "the attached card does not match the carrier's code"


def test_postage_class_by_weight_and_an_overweight_piece_is_diverted() -> None:
    table = (
        PostageClass(name="standard", max_g=20, price=95),
        PostageClass(name="compact", max_g=50, price=110),
    )
    light = Weights(carrier_envelope_g=4.4, sheet_g=4.99)  # DL envelope: 15.5 g with the card
    heavy = Weights(carrier_envelope_g=40.0)
    for weights, cls in ((light, "standard"), (Weights(carrier_envelope_g=12.0), "compact")):
        p = carrier(1)
        Inserter(weights, table, "p").run(p, contents_for(p, None))
        assert (p.postage_class, p.status) == (cls, PieceStatus.DISPATCHED)
    p = carrier(2)
    Inserter(heavy, table, "p").run(p, contents_for(p, None))
    assert p.status is PieceStatus.DIVERTED and "over every postage class" in p.reason


def test_the_scale_is_repeatable_from_its_seed() -> None:
    a, b = carrier(3), carrier(3)
    Inserter(Weights(), (PostageClass(name="s", max_g=50, price=1),), "x").run(
        a, contents_for(a, None)
    )
    Inserter(Weights(), (PostageClass(name="s", max_g=50, price=1),), "x").run(
        b, contents_for(b, None)
    )
    assert a.weight_g == b.weight_g
