"""Reports of a batch: the summary, the chip usage report, the response data.

* :func:`batch_summary` - records and jobs, good cards, rejected cards by station and
  reason, remakes, modeled machine time and cards per hour (the pipeline of
  :mod:`.timing` over every card the line handled, for the module count it ran with
  and for 1, 4, 8 and 16 modules), host CPU per card (from the ``line_run`` audit
  records), and the batch's invariants.
* :func:`write_chip_report` - for the data owner: every chip serial the line used
  for the batch, the record it carries or why it was spoiled (CSV).
* :func:`write_response_data` - what goes back to the issuer for each good card:
  keys generated at the bureau as TR-31 blocks under the issuer's KEK, PINs
  returned as PIN blocks under the issuer's PIN key, public keys the card
  generated (JSON Lines; nothing in clear). Written only if the product has any.

Reports name records by their reference and masked PAN, never cardholder data.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardperso.dataprep.prepared import PreparedCard
from cardperso.errors import InputError
from cardperso.line.orchestrator import FINISH_ENTRY
from cardperso.line.timing import pipeline
from cardperso.production import repo
from cardperso.production.crypto_fields import FieldCipher
from cardperso.production.invariants import consistency_problems
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    AuditLog,
    Batch,
    CardJob,
    JobState,
    RejectBinEntry,
)
from cardperso.production.models import Profile as ProfileRow

__all__ = [
    "MODULE_COUNTS",
    "BatchSummary",
    "batch_summary",
    "write_chip_report",
    "write_response_data",
]

MODULE_COUNTS = (1, 4, 8, 16)


@dataclass
class BatchSummary:
    """Everything the batch report says (JSON-ready through :meth:`as_dict`)."""

    batch_id: int
    reference: str
    profile: str
    state: str
    records: int
    jobs: dict[str, int]
    attempts: int
    good: int
    rejected: int
    rejected_by_reason: dict[str, int]
    remade: int
    chips_good: int
    chips_spoiled: int
    modules: int
    modeled: dict[str, Any]
    modeled_by_modules: dict[int, dict[str, Any]]
    host_cpu_ms_per_card: float | None
    card_cpu_ms_per_card: float | None
    runs: int
    problems: list[str] = field(default_factory=list)
    equipment_cpu_ms_per_card: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": {
                "id": self.batch_id,
                "reference": self.reference,
                "profile": self.profile,
                "state": self.state,
                "records": self.records,
            },
            "jobs": self.jobs,
            "cards": {
                "attempts": self.attempts,
                "good": self.good,
                "rejected": self.rejected,
                "remade": self.remade,
                "rejected_by_reason": self.rejected_by_reason,
            },
            "chips": {"used_good": self.chips_good, "spoiled": self.chips_spoiled},
            "machine": {
                "modules": self.modules,
                "modeled": self.modeled,
                "modeled_by_modules": {str(k): v for k, v in self.modeled_by_modules.items()},
            },
            "host": {
                "runs": self.runs,
                "host_cpu_ms_per_card": self.host_cpu_ms_per_card,
                "card_simulation_cpu_ms_per_card": self.card_cpu_ms_per_card,
                "machine_simulation_cpu_ms_per_card": self.equipment_cpu_ms_per_card,
            },
            "invariants": {"ok": not self.problems, "problems": self.problems[:50]},
        }

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [
            f"batch {self.batch_id} ({self.reference}, {self.profile}): {self.state}, "
            f"{self.records} records, {self.jobs.get('good', 0)} good",
            f"  cards: {self.attempts} made, {self.good} good, {self.rejected} rejected, "
            f"{self.remade} remakes; chips {self.chips_good} used, {self.chips_spoiled} spoiled",
        ]
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1])[:10]:
            out.append(f"    reject bin: {n:5d}  {reason}")
        m = self.modeled
        if m:
            out.append(
                f"  modeled machine time {m['makespan_s']:.0f} s with {self.modules} modules: "
                f"{m['cards_per_hour']:.0f} cards/hour, limited by {m['limiting_station']}"
            )
            rates = ", ".join(
                f"{n}: {v['cards_per_hour']:.0f}/h ({v['limiting_station']})"
                for n, v in self.modeled_by_modules.items()
            )
            out.append(f"  modeled cards/hour by modules: {rates}")
        if self.host_cpu_ms_per_card is not None:
            out.append(
                f"  host CPU {self.host_cpu_ms_per_card:.2f} ms per card "
                f"(simulated cards {self.card_cpu_ms_per_card or 0:.2f} ms and machines "
                f"{self.equipment_cpu_ms_per_card or 0:.2f} ms, not counted)"
            )
        out.append(
            "  invariants: hold"
            if not self.problems
            else f"  invariants: {len(self.problems)} problems"
        )
        return out


def _stages(session: Session, batch_id: int) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    rows = session.scalars(
        select(Attempt)
        .where(Attempt.batch_id == batch_id, Attempt.outcome != AttemptOutcome.IN_PROGRESS)
        .order_by(Attempt.ended_at, Attempt.id)
    )
    for att in rows:
        for entry in att.station_results:
            if entry.get("station") == FINISH_ENTRY:
                stages = (entry.get("detail") or {}).get("stages") or {}
                out.append({str(k): float(v) for k, v in stages.items()})
    return out


def _runs(session: Session, batch_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuditLog.detail)
        .where(AuditLog.action == "line_run", AuditLog.object == f"batch:{batch_id}")
        .order_by(AuditLog.seq)
    )
    return [json.loads(d) for d in rows]


def batch_summary(session: Session, batch_id: int, modules: int | None = None) -> BatchSummary:
    """The summary of one batch from the database alone."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise InputError(f"no batch {batch_id}", field="batch")
    prof = session.get(ProfileRow, batch.profile_id)
    prog = repo.progress(session, batch_id)
    reasons: Counter[str] = Counter()
    for station, reason in session.execute(
        select(RejectBinEntry.station, RejectBinEntry.reason).where(
            RejectBinEntry.batch_id == batch_id
        )
    ):
        reasons[f"{station}: {reason}"] += 1
    remade = len(
        session.scalars(
            select(Attempt.id).where(
                Attempt.batch_id == batch_id, Attempt.remake_of_id.is_not(None)
            )
        ).all()
    )
    runs = _runs(session, batch_id)
    n_modules = modules or (int(runs[-1]["modules"]) if runs else 4)
    stages = _stages(session, batch_id)
    modeled: dict[str, Any] = {}
    by_modules: dict[int, dict[str, Any]] = {}
    if stages:
        modeled = pipeline(stages, n_modules).as_dict()
        by_modules = {n: pipeline(stages, n).as_dict() for n in MODULE_COUNTS}
    cards = sum(int(r["cards"]) for r in runs)
    cpu = sum(float(r["cpu_s"]) for r in runs)
    card_cpu = sum(float(r["card_cpu_s"]) for r in runs)
    machines = sum(float(r.get("equipment_cpu_s", 0.0)) for r in runs)
    return BatchSummary(
        batch_id=batch_id,
        reference=batch.reference,
        profile=f"{prof.code} v{prof.version}" if prof else "?",
        state=batch.state.value,
        records=batch.record_count,
        jobs={s.value: n for s, n in prog.jobs.items()},
        attempts=sum(prog.attempts.values()),
        good=prog.attempts[AttemptOutcome.GOOD],
        rejected=prog.attempts[AttemptOutcome.REJECTED],
        rejected_by_reason=dict(reasons),
        remade=remade,
        chips_good=prog.chips_good,
        chips_spoiled=prog.chips_spoiled,
        modules=n_modules,
        modeled=modeled,
        modeled_by_modules=by_modules,
        host_cpu_ms_per_card=(
            round((cpu - card_cpu - machines) * 1000 / cards, 3) if cards else None
        ),
        card_cpu_ms_per_card=round(card_cpu * 1000 / cards, 3) if cards else None,
        equipment_cpu_ms_per_card=round(machines * 1000 / cards, 3) if cards else None,
        runs=len(runs),
        problems=consistency_problems(session, batch_id),
    )


def write_chip_report(session: Session, batch_id: int, path: Path) -> int:
    """The chip usage report (CSV); the number of chips listed."""
    rows = repo.chip_report(session, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["chip_serial", "state", "record_ref", "seq", "attempt", "reason", "recorded"])
        for r in rows:
            w.writerow(
                [
                    r.chip_serial,
                    r.state.value,
                    r.record_ref or "",
                    r.seq or "",
                    r.attempt_no or "",
                    r.reason or "",
                    r.recorded_at.isoformat(),
                ]
            )
        # chip-bound data sets that went into no chip: the issuer learns which
        # prepared sets were not used (a faulty or missing chip)
        unused = repo.unused_bound_sets(session, batch_id)
        for u in unused:
            w.writerow([u.chip_serial, "set_unused", u.record_ref, u.seq, "", u.reason, ""])
    return len(rows) + len(unused)


def write_response_data(
    session: Session, batch_id: int, cipher: FieldCipher, path: Path
) -> int | None:
    """Response data of every good card (JSON Lines); None (no file) if there is none."""
    jobs = session.scalars(
        select(CardJob)
        .where(CardJob.batch_id == batch_id, CardJob.state == JobState.GOOD)
        .order_by(CardJob.seq)
    )
    out: list[str] = []
    for job in jobs:
        card = PreparedCard.from_line(repo.open_record(job, cipher))
        good = session.scalars(
            select(Attempt).where(Attempt.job_id == job.id, Attempt.outcome == AttemptOutcome.GOOD)
        ).first()
        collected: dict[str, str] = {}
        if good is not None:
            for entry in good.station_results:
                if entry.get("station") == FINISH_ENTRY:
                    collected = {
                        name: value
                        for name, value in (
                            (entry.get("detail") or {}).get("collected") or {}
                        ).items()
                        # copy 0 of a card-generated PIN is the mailer's (the bureau's
                        # print key); the issuer gets copy 1 under its own PIN key
                        if not (name.startswith("pin_blocks:") and name.endswith("/0"))
                    }
        if not (card.response_keys or card.response_pins or collected):
            continue
        out.append(
            json.dumps(
                {
                    "record": job.record_ref,
                    "pan": job.pan_masked,
                    "chip_serial": good.chip_serial if good else None,
                    "keys": [k.to_json() for k in card.response_keys],
                    "pins": [p.to_json() for p in card.response_pins],
                    "card_generated": collected,
                },
                separators=(",", ":"),
            )
        )
    if not out:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(out)
