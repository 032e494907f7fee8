"""Invariants of a batch in the production database, checked from the rows alone.

The line's crash tests and the batch report run these after every run: a data set
is bound to exactly one good chip, every spoiled chip is reported, every remake is
linked to the card it replaces. An empty list means the batch is consistent.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    CardJob,
    ChipState,
    ChipUsage,
    JobState,
    RejectBinEntry,
    StockCard,
    StockState,
)

__all__ = ["consistency_problems"]


def consistency_problems(session: Session, batch_id: int) -> list[str]:
    """Invariants of a batch; an empty list means they all hold.

    Every good job has exactly one good attempt and one used-good chip; no job has
    more than one open attempt; every rejected attempt has a reject-bin entry and a
    spoiled chip; every ended attempt's chip is reported exactly once; each remake
    links to its job's previous, rejected attempt; every stock card taken for the
    batch is consumed (good), spoiled (reported) or still claimed by an open attempt.
    """
    problems: list[str] = []
    jobs = session.scalars(select(CardJob).where(CardJob.batch_id == batch_id)).all()
    attempts_by_job: dict[int, list[Attempt]] = {}
    for att in session.scalars(
        select(Attempt).where(Attempt.batch_id == batch_id).order_by(Attempt.attempt_no)
    ):
        attempts_by_job.setdefault(att.job_id, []).append(att)
    usage = {
        u.attempt_id: u
        for u in session.scalars(select(ChipUsage).where(ChipUsage.batch_id == batch_id))
        if u.attempt_id is not None
    }
    binned = set(
        session.scalars(
            select(RejectBinEntry.attempt_id).where(RejectBinEntry.batch_id == batch_id)
        )
    )
    for job in jobs:
        atts = attempts_by_job.get(job.id, [])
        good = [a for a in atts if a.outcome is AttemptOutcome.GOOD]
        open_ = [a for a in atts if a.outcome is AttemptOutcome.IN_PROGRESS]
        if job.state is JobState.GOOD and len(good) != 1:
            problems.append(f"job {job.id}: good with {len(good)} good attempts")
        if job.state is not JobState.GOOD and good:
            problems.append(f"job {job.id}: {job.state.value} but has a good attempt")
        if len(open_) > 1 or (open_ and job.state is not JobState.IN_PROGRESS):
            problems.append(f"job {job.id}: {len(open_)} open attempts, state {job.state.value}")
        if job.attempt_count != len(atts):
            problems.append(f"job {job.id}: attempt_count {job.attempt_count} != {len(atts)}")
        for i, att in enumerate(atts):
            expected_link = atts[i - 1].id if i else None
            if att.attempt_no != i + 1 or att.remake_of_id != expected_link:
                problems.append(f"attempt {att.id}: broken remake link")
            if i and atts[i - 1].outcome is not AttemptOutcome.REJECTED:
                problems.append(f"attempt {att.id}: remakes an attempt that was not rejected")
            u = usage.get(att.id)
            if att.outcome is AttemptOutcome.GOOD:
                if u is None or u.state is not ChipState.USED_GOOD:
                    problems.append(f"attempt {att.id}: good chip not reported used")
            elif att.outcome is AttemptOutcome.REJECTED:
                if u is None or u.state is not ChipState.SPOILED:
                    problems.append(f"attempt {att.id}: rejected chip not reported spoiled")
                if att.id not in binned:
                    problems.append(f"attempt {att.id}: rejected but not in the reject bin")
            elif u is not None:
                problems.append(f"attempt {att.id}: open attempt already in the chip report")
            if u is not None and u.chip_serial != att.chip_serial:
                problems.append(f"attempt {att.id}: chip report names another chip")
    problems += _stock_problems(session, batch_id, attempts_by_job)
    return problems


def _stock_problems(
    session: Session, batch_id: int, attempts_by_job: Mapping[int, list[Attempt]]
) -> list[str]:
    """Stock taken for the batch agrees with the attempts and the chip report."""
    problems: list[str] = []
    by_card = {a.stock_card_id: a for atts in attempts_by_job.values() for a in atts}
    reported = {
        u.stock_card_id: u.state
        for u in session.scalars(select(ChipUsage).where(ChipUsage.batch_id == batch_id))
        if u.stock_card_id is not None
    }
    expected_state = {
        AttemptOutcome.GOOD: StockState.CONSUMED,
        AttemptOutcome.REJECTED: StockState.SPOILED,
        AttemptOutcome.IN_PROGRESS: StockState.CLAIMED,
    }
    for card in session.scalars(select(StockCard).where(StockCard.batch_id == batch_id)):
        att = by_card.get(card.id)
        if att is not None and card.state is not expected_state[att.outcome]:
            problems.append(f"stock card {card.serial}: {card.state.value} for {att.outcome}")
        orphan_ok = card.state is StockState.CLAIMED or (
            card.state is StockState.SPOILED and reported.get(card.id) is ChipState.SPOILED
        )
        if att is None and not orphan_ok:
            problems.append(f"stock card {card.serial}: {card.state.value}, never attempted")
        if card.state is StockState.CONSUMED and reported.get(card.id) is not ChipState.USED_GOOD:
            problems.append(f"stock card {card.serial}: consumed but not reported used")
        if card.state is StockState.SPOILED and reported.get(card.id) is not ChipState.SPOILED:
            problems.append(f"stock card {card.serial}: spoiled but not reported spoiled")
    return problems
