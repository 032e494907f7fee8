"""The lettershop's input: the good cards of a finished batch, from the production database.

For every card job that ended ``good`` (in production order), the sealed record is
opened with the record cipher the caller derived in the HSM, and its letters part is
read: the presort key, the carrier (template, address block, greeting, card
position) and the PIN mailer (template, address, delay, PIN blocks under the print
key). The good attempt gives the chip serial - the card that is physically on the
inserter - and, for a PIN the card generated itself at the line, the mailer's PIN
block (``pin_blocks:<name>/0`` in the attempt's collected data: copy 0 is the
mailer's). The clear PAN is taken from the prepared card only when a mailer's PIN
block format is bound to it, and only ever handed to the HSM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardperso.dataprep.magstripe import parse_track1, parse_track2
from cardperso.dataprep.prepared import PreparedCard
from cardperso.errors import InputError
from cardperso.lettershop.pieces import Letter, MailerBlock
from cardperso.production import repo
from cardperso.production.crypto_fields import FieldCipher
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    Batch,
    CardJob,
    Issuer,
    JobState,
)
from cardperso.production.models import Profile as ProfileRow

__all__ = ["BatchInfo", "read_letters"]

_PAN_BOUND = frozenset({0, 3, 4})


@dataclass(frozen=True)
class BatchInfo:
    batch_id: int
    reference: str
    issuer_code: str
    issuer: str
    profile: str
    state: str
    records: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.batch_id,
            "reference": self.reference,
            "issuer": self.issuer_code,
            "profile": self.profile,
            "state": self.state,
            "records": self.records,
        }


def batch_info(session: Session, batch_id: int) -> BatchInfo:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise InputError(f"no batch {batch_id}", field="batch")
    issuer = session.get(Issuer, batch.issuer_id)
    prof = session.get(ProfileRow, batch.profile_id)
    return BatchInfo(
        batch.id,
        batch.reference,
        issuer.code if issuer else "?",
        issuer.name if issuer else "?",
        f"{prof.code} v{prof.version}" if prof else "?",
        batch.state.value,
        batch.record_count,
    )


def _collected(attempt: Attempt) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in attempt.station_results or []:
        got = (entry.get("detail") or {}).get("collected") or {}
        if isinstance(got, dict):
            out.update({str(k): str(v) for k, v in got.items()})
    return out


def _pan(card: PreparedCard) -> str | None:
    for step in card.script:
        if step.pan:
            return step.pan
    for number, parse in ((2, parse_track2), (1, parse_track1)):
        text = card.tracks.get(number)
        if text:
            try:
                return parse(text).pan
            except ValueError:
                continue
    return None


def _letter(job: CardJob, attempt: Attempt, card: PreparedCard) -> Letter:
    where = f"record {job.record_ref}"
    if card.carrier is None:
        raise InputError(f"{where}: the prepared card has no carrier", field="carrier")
    pins: tuple[MailerBlock, ...] = ()
    address: tuple[str, ...] = ()
    template, delay, pan = "", None, None
    if card.mailer is not None:
        collected = _collected(attempt) if any(not p.block for p in card.mailer.pins) else {}
        blocks = []
        for p in card.mailer.pins:
            block = p.block
            if not block:
                found = collected.get(f"pin_blocks:{p.name}/0")
                if not found:
                    raise InputError(
                        f"{where}: the line kept no mailer PIN block for {p.name}",
                        field="pin_mailer",
                    )
                block = bytes.fromhex(found)
            blocks.append(MailerBlock(p.name, p.key, p.format, block))
        pins = tuple(blocks)
        address, template, delay = card.mailer.address, card.mailer.template, card.mailer.delay_days
        if any(b.format in _PAN_BOUND for b in pins):
            pan = _pan(card)
    return Letter(
        batch_id=job.batch_id,
        seq=job.seq,
        record_ref=job.record_ref,
        pan_masked=job.pan_masked,
        chip_serial=attempt.chip_serial,
        presort=card.presort,
        card_offset_mm=float(card.carrier.card_offset_mm),
        address=card.carrier.address,
        greeting=card.carrier.greeting,
        carrier_template=card.carrier.template,
        mailer_address=address,
        mailer_template=template,
        mailer_delay_days=delay,
        pins=pins,
        pan=pan,
    )


def read_letters(session: Session, batch_id: int, cipher: FieldCipher) -> list[Letter]:
    """The letters of every good card of the batch, in production order."""
    rows = session.execute(
        select(CardJob, Attempt)
        .join(
            Attempt,
            (Attempt.job_id == CardJob.id) & (Attempt.outcome == AttemptOutcome.GOOD),
        )
        .where(CardJob.batch_id == batch_id, CardJob.state == JobState.GOOD)
        .order_by(CardJob.seq)
    )
    out: list[Letter] = []
    for job, attempt in rows:
        card = PreparedCard.from_line(repo.open_record(job, cipher))
        out.append(_letter(job, attempt, card))
    return out
