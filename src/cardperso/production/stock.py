"""Stock in the initialization room: blank cards in, pre-initialized stock out.

The initialization room (:mod:`cardperso.line.initroom`) takes blank cards from the
feeder stock one at a time and books each one, after initialization, as
pre-initialized stock of one product and profile version, which a personalization
line claims later (``kind=PRE_INITIALIZED, product=<profile code>``). Life of a
card here::

    blank, available --claim_blank_for_init--> blank, claimed by "init:<station>"
        --book_initialized--> pre_initialized, available (product, profile version)
        --spoil_in_init-----> spoiled (the card failed; reason in the audit log)

A claim names the station (``module_id = "init:<station>"``) and no batch, so the
batch line's crash recovery never touches it; :func:`recover_init_claims` spoils
what a killed initialization run left claimed (the card may be half initialized,
or initialized and locked without being booked: either way it is not trusted).

Every function works inside the caller's transaction and never commits; claims
are authorized (:data:`Action.INITIALIZE_STOCK`, the init operator's role) and
every change is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardperso.errors import CardpersoError, InputError
from cardperso.production import repo
from cardperso.production.models import InvalidTransition, StockCard, StockKind, StockState
from cardperso.production.operators import Action, Principal, authorize

__all__ = [
    "INIT_PREFIX",
    "StockMismatch",
    "available",
    "book_initialized",
    "check_initialized_stock",
    "claim_blank_for_init",
    "init_station_id",
    "recover_init_claims",
    "spoil_in_init",
]

INIT_PREFIX = "init:"
"""``module_id`` prefix of a card claimed by an initialization-room station."""


class StockMismatch(CardpersoError):
    """Pre-initialized stock that does not match the batch it would be used for."""

    exit_code = 6


def init_station_id(station: str) -> str:
    """The ``module_id`` that marks a claim by initialization station ``station``."""
    sid = f"{INIT_PREFIX}{station}"
    if not 1 <= len(station) <= 27 or not all(c.isalnum() or c in "_.-" for c in station):
        raise InputError("station id must be 1..27 of [A-Za-z0-9_.-]", field="station")
    return sid


def _claimed(session: Session, card_id: int, sid: str) -> StockCard:
    card = session.get(StockCard, card_id, with_for_update=True, populate_existing=True)
    if card is None:
        raise InputError(f"no stock card {card_id}", field="stock_card")
    if (
        card.state is not StockState.CLAIMED
        or card.module_id != sid
        or card.batch_id is not None
        or card.kind is not StockKind.BLANK
    ):
        raise InvalidTransition(f"stock card {card.serial} is not claimed by {sid}")
    return card


def claim_blank_for_init(
    session: Session, *, by: Principal, station: str, when: datetime
) -> StockCard | None:
    """Take the oldest available blank card for initialization station ``station``;
    None when no blank card is left. Authorized for the init operator only."""
    sid = init_station_id(station)
    authorize(session, by, Action.INITIALIZE_STOCK, f"station:{sid}", when)
    card = session.scalars(
        select(StockCard)
        .where(StockCard.state == StockState.AVAILABLE, StockCard.kind == StockKind.BLANK)
        .order_by(StockCard.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if card is None:
        return None
    card.state = StockState.CLAIMED
    card.module_id = sid
    card.claimed_at = when
    session.flush()
    return card


def book_initialized(
    session: Session,
    card_id: int,
    *,
    by: Principal,
    station: str,
    product: str,
    profile_version: int,
    when: datetime,
    detail: Mapping[str, Any] | None = None,
) -> StockCard:
    """A card the station initialized becomes pre-initialized stock of ``product``."""
    sid = init_station_id(station)
    if not 1 <= len(product) <= 32:
        raise InputError("product must be 1..32 characters", field="product")
    card = _claimed(session, card_id, sid)
    card.kind = StockKind.PRE_INITIALIZED
    card.product = product
    card.profile_version = profile_version
    card.state = StockState.AVAILABLE
    card.module_id = None
    card.claimed_at = None
    session.flush()
    repo._log(
        session,
        by.name,
        "stock_initialized",
        f"stock:{card.serial}",
        when,
        detail={
            "station": station,
            "product": product,
            "version": profile_version,
            **(detail or {}),
        },
    )
    return card


def spoil_in_init(
    session: Session,
    card_id: int,
    *,
    by: Principal,
    station: str,
    reason: str,
    when: datetime,
) -> StockCard:
    """A card that failed (or served as the golden card) leaves the stock for good."""
    card = _claimed(session, card_id, init_station_id(station))
    _spoil(session, card, by=by, station=station, reason=reason, when=when)
    session.flush()
    return card


def _spoil(
    session: Session, card: StockCard, *, by: Principal, station: str, reason: str, when: datetime
) -> None:
    """The card leaves the stock for good, with an audit record saying why."""
    card.state = StockState.SPOILED
    repo._log(
        session,
        by.name,
        "stock_spoiled",
        f"stock:{card.serial}",
        when,
        result="spoiled",
        detail={"station": station, "reason": reason[:200]},
    )


def recover_init_claims(session: Session, *, by: Principal, station: str, when: datetime) -> int:
    """Spoil the cards a killed run of ``station`` left claimed; how many."""
    sid = init_station_id(station)
    authorize(session, by, Action.INITIALIZE_STOCK, f"station:{sid}", when)
    cards = session.scalars(
        select(StockCard)
        .where(
            StockCard.state == StockState.CLAIMED,
            StockCard.module_id == sid,
            StockCard.batch_id.is_(None),
        )
        .with_for_update()
    ).all()
    for card in cards:
        reason = "interrupted in the initialization room"
        _spoil(session, card, by=by, station=station, reason=reason, when=when)
    session.flush()
    return len(cards)


def available(session: Session, kind: StockKind, product: str | None = None) -> int:
    """Available stock cards of ``kind`` (and ``product``)."""
    stmt = (
        select(func.count())
        .select_from(StockCard)
        .where(StockCard.state == StockState.AVAILABLE, StockCard.kind == kind)
    )
    if product is not None:
        stmt = stmt.where(StockCard.product == product)
    return int(session.scalar(stmt) or 0)


def check_initialized_stock(session: Session, product: str, profile_version: int) -> None:
    """Refuse (:class:`StockMismatch`) when available pre-initialized stock of
    ``product`` was initialized for another profile version: the line's claim takes
    cards by product, so such a card could reach a batch it does not fit."""
    other = session.scalars(
        select(StockCard.profile_version)
        .where(
            StockCard.state == StockState.AVAILABLE,
            StockCard.kind == StockKind.PRE_INITIALIZED,
            StockCard.product == product,
            StockCard.profile_version.is_not(None),
            StockCard.profile_version != profile_version,
        )
        .limit(1)
    ).first()
    if other is not None:
        raise StockMismatch(
            f"pre-initialized {product} stock includes cards initialized for profile "
            f"version {other}; this batch is version {profile_version}"
        )
