"""Postal presort: order, posting days, trays and bundles."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from cardperso.dataprep.fields import presort_key as prep_key
from cardperso.lettershop.config import PresortConfig
from cardperso.lettershop.pieces import Letter, Piece, PieceKind, PieceStatus
from cardperso.lettershop.presort import (
    assign_trays,
    posting_day,
    posting_day_after,
    posting_day_before,
    presort_order,
    split_days,
)

MONDAY = date(2026, 3, 2)
WEEKDAYS = (0, 1, 2, 3, 4)


def letter(seq: int, country: str, postal: str) -> Letter:
    return Letter(
        batch_id=1,
        seq=seq,
        record_ref=f"R/{seq}",
        pan_masked="476173******0000",
        chip_serial=f"{seq:016X}",
        presort=prep_key(country, postal),
        card_offset_mm=85,
        address=("A B", "1 Street", f"{postal} Town", country),
        greeting=None,
        carrier_template="t",
    )


def test_letters_come_out_by_country_region_local_then_production_order() -> None:
    letters = [
        letter(1, "GB", "G1 9SU"),
        letter(2, "FR", "06090"),
        letter(3, "DE", "80331"),
        letter(4, "DE", "28847"),
        letter(5, "DE", "80331"),
        letter(6, "DE", "80100"),
        letter(7, "GB", "EH1 2TJ"),
    ]
    got = [x.seq for x in presort_order(letters, PresortConfig())]
    assert got == [4, 6, 3, 5, 2, 7, 1]  # DE 28, DE 80 (100 < 331), FR, GB EH < G


def test_countries_first_in_the_configured_order_and_regions_resplit() -> None:
    letters = [letter(1, "DE", "80331"), letter(2, "FR", "06090"), letter(3, "GB", "G1 9SU")]
    cfg = PresortConfig(country_order=("GB", "FR"))
    assert [x.seq for x in presort_order(letters, cfg)] == [3, 2, 1]
    # DE by Leitzone (first digit) instead of Leitregion: 80331 and 89000 share region 8
    more = [letter(1, "DE", "89000"), letter(2, "DE", "70100"), letter(3, "DE", "80331")]
    one = PresortConfig(region_lengths={"DE": 1})
    assert [x.seq for x in presort_order(more, one)] == [2, 3, 1]


def piece(n: int, region: str, status: PieceStatus = PieceStatus.DISPATCHED) -> Piece:
    p = Piece(PieceKind.CARRIER, f"C-{n}", f"R/{n}", n, "DE", region, "000", MONDAY)
    p.status = status
    return p


def test_bundles_and_trays_break_at_size_and_at_each_new_region() -> None:
    pieces = [piece(i, "10") for i in range(7)] + [piece(i, "20") for i in range(7, 10)]
    pieces[2].status = PieceStatus.DIVERTED
    trays = assign_trays(pieces, PresortConfig(bundle_size=2, tray_size=4))
    got = [(p.tray, p.bundle, p.position) for p in pieces]
    assert got == [
        (1, 1, 1),
        (1, 1, 2),
        (0, 0, 0),  # diverted: in no tray
        (1, 2, 3),
        (1, 2, 4),
        (2, 1, 5),  # tray full
        (2, 1, 6),
        (3, 1, 7),  # region 20
        (3, 1, 8),
        (3, 2, 9),
    ]
    assert trays == 3


@given(
    st.lists(st.sampled_from(["10", "20", "30"]), max_size=60).map(sorted),
    st.integers(1, 7),
    st.integers(1, 20),
)
def test_trays_hold_whole_bundles_of_one_region_within_their_sizes(
    regions: list[str], bundle: int, tray: int
) -> None:
    pieces = [piece(i, r) for i, r in enumerate(regions)]
    assign_trays(pieces, PresortConfig(bundle_size=bundle, tray_size=tray))
    by_tray: dict[int, list[Piece]] = {}
    for p in pieces:
        by_tray.setdefault(p.tray, []).append(p)
    for members in by_tray.values():
        assert len({p.region for p in members}) == 1
        assert len(members) <= tray
        sizes: dict[int, int] = {}
        for p in members:
            sizes[p.bundle] = sizes.get(p.bundle, 0) + 1
        assert max(sizes.values()) <= bundle
    assert [p.position for p in pieces] == list(range(1, len(pieces) + 1))


def test_posting_days_skip_the_weekend() -> None:
    saturday = date(2026, 3, 7)
    assert posting_day(saturday, WEEKDAYS) == date(2026, 3, 9)
    assert posting_day(MONDAY, WEEKDAYS) == MONDAY
    assert posting_day_after(date(2026, 3, 6), 1, WEEKDAYS) == date(2026, 3, 9)
    assert posting_day_before(MONDAY, 1, WEEKDAYS) == date(2026, 2, 27)
    assert posting_day(saturday, (5,)) == saturday


def test_days_hold_whole_trays_up_to_the_inserters_capacity() -> None:
    items = list(range(25))
    days = split_days(items, date(2026, 3, 6), 10, 4, WEEKDAYS)  # a Friday; 8 a day
    assert [d for d, _ in days] == [
        date(2026, 3, 6),
        date(2026, 3, 9),
        date(2026, 3, 10),
        date(2026, 3, 11),
    ]
    assert [len(x) for _, x in days] == [8, 8, 8, 1]
    assert [i for _, x in days for i in x] == items
    assert split_days(items, MONDAY, None, 4, WEEKDAYS) == [(MONDAY, items)]
    assert split_days([], MONDAY, 10, 4, WEEKDAYS) == []
