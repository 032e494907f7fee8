"""Postal presort: letters in postal order, cut into days, trays and bundles.

The post sorts by a regional code, then a local code (DE Leitregion, FR departement,
GB postcode area, US sectional center; :func:`cardperso.dataprep.fields.presort_key`
makes the key when a record is prepared). Mail handed over in that order, in trays
of one region made of bundles, skips the post's first sorting pass - the discount
the chapter's presort is for. Here:

* :func:`presort_order` sorts letters by country (``country_order`` first, then
  alphabetically), regional code, local code and production sequence, after
  re-splitting a country's codes where the settings give another regional length;
* :func:`split_days` cuts the sorted stream into posting days of at most
  ``daily_capacity`` pieces (a whole number of trays);
* :func:`assign_trays` numbers the accepted pieces of one day and kind into trays
  and bundles: a bundle ends at ``bundle_size`` pieces or where the region
  changes, a tray holds whole bundles of one region up to ``tray_size`` pieces;
* :func:`posting_day` moves a day forward to the next day the post takes mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import TypeVar

from cardperso.lettershop.config import PresortConfig
from cardperso.lettershop.pieces import Letter, Piece, PieceStatus

__all__ = [
    "assign_trays",
    "posting_day",
    "posting_day_after",
    "posting_day_before",
    "presort_key",
    "presort_order",
    "split_days",
]

_T = TypeVar("_T")


def presort_key(letter: Letter, config: PresortConfig) -> tuple[str, str, str]:
    """(country, region, local) of a letter under the settings' regional lengths."""
    country, region, local = letter.presort
    n = config.region_lengths.get(country)
    if n is not None:
        code = region + local
        region, local = code[:n], code[n:]
    return country, region, local


def presort_order(letters: Iterable[Letter], config: PresortConfig) -> list[Letter]:
    """The letters in postal order (stable: equal codes keep production order)."""
    rank = {c: i for i, c in enumerate(config.country_order)}
    far = len(rank)

    def key(letter: Letter) -> tuple[int, str, str, str, int]:
        country, region, local = presort_key(letter, config)
        return (rank.get(country, far), country, region, local, letter.seq)

    return sorted(letters, key=key)


def posting_day(day: date, weekdays: Sequence[int]) -> date:
    """``day`` or the first day after it on which the post takes mail."""
    for _ in range(7):
        if day.weekday() in weekdays:
            return day
        day += timedelta(days=1)
    raise ValueError("no posting weekday")


def posting_day_after(day: date, days: int, weekdays: Sequence[int]) -> date:
    """The posting day ``days`` posting days after ``day``."""
    for _ in range(days):
        day += timedelta(days=1)
        while day.weekday() not in weekdays:
            day += timedelta(days=1)
    return day


def posting_day_before(day: date, days: int, weekdays: Sequence[int]) -> date:
    """The posting day ``days`` posting days before ``day``."""
    for _ in range(days):
        day -= timedelta(days=1)
        while day.weekday() not in weekdays:
            day -= timedelta(days=1)
    return day


def split_days(
    items: Sequence[_T],
    first: date,
    capacity: int | None,
    tray_size: int,
    weekdays: Sequence[int],
) -> list[tuple[date, list[_T]]]:
    """Consecutive posting days from ``first``, each with at most ``capacity`` items
    (a multiple of ``tray_size``, so a day ends with full trays), in order."""
    day = posting_day(first, weekdays)
    if capacity is None or len(items) <= capacity:
        return [(day, list(items))] if items else []
    per_day = max(tray_size, capacity - capacity % tray_size)
    out: list[tuple[date, list[_T]]] = []
    for start in range(0, len(items), per_day):
        out.append((day, list(items[start : start + per_day])))
        day = posting_day(day + timedelta(days=1), weekdays)
    return out


def assign_trays(pieces: Sequence[Piece], config: PresortConfig) -> int:
    """Number positions, trays and bundles of one day's pieces of one kind, in the given
    (postal) order; diverted and held pieces get none. The number of trays."""
    tray = bundle = in_tray = in_bundle = position = 0
    last: tuple[str, str] | None = None
    for piece in pieces:
        if piece.status is not PieceStatus.DISPATCHED:
            piece.tray = piece.bundle = piece.position = 0
            continue
        region = piece.region_key
        if region != last or in_tray >= config.tray_size:
            tray += 1
            bundle, in_tray, in_bundle = 1, 0, 0
        elif in_bundle >= config.bundle_size:
            bundle += 1
            in_bundle = 0
        last = region
        in_tray += 1
        in_bundle += 1
        position += 1
        piece.tray, piece.bundle, piece.position = tray, bundle, position
    return tray
