"""The lettershop run of one finished batch (the use case the CLI and the service call).

:func:`run_lettershop`, as an authorized operator (audited, refusals too):

1. reads the good cards' letters from the production database (:mod:`.source`) and
   checks that every carrier and PIN mailer can be printed - nothing is printed
   unless all can;
2. sorts them into postal order (:mod:`.presort`) and cuts the stream into posting
   days;
3. prints each day's carriers (:mod:`.carrier`) and puts every piece through the
   inserter and its scale (:mod:`.inserter`); diverted pieces are listed, not posted;
4. schedules each posted card's PIN mailer ``delay`` days later (the settings, else
   the profile) on a posting day, holds the mailers of diverted cards, and prints the
   mailers inside the HSM (:mod:`.mailer`, one lettershop-role session), each through
   its own inserter and scale;
5. if asked, prints a small run of test letters to the target region, posted some
   days before the mailing and kept apart in the manifest;
6. checks that no card and PIN mailer share an envelope or a day, writes the dispatch
   manifest (:mod:`.manifest`) and records the run in the audit log.

Everything is written into a hidden folder that becomes ``<out>/lettershop-batch-<id>``
only when the whole run succeeded; any failure removes it. A batch goes through the
lettershop once (a second run is refused: a PIN mailer is printed once).

Output folder::

    carriers/carriers-<day>.pdf            one page per card, in postal order
    pin-mailers/<day>/<envelope>.pdf       one document per mailer (the PIN printer's jobs)
    test-letters/test-letters-<day>.pdf    the test run, if any
    dispatch-manifest.json / .csv, pieces.csv, test-letters.csv
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import select

from cardperso.errors import InputError
from cardperso.hsm import Hsm, Role
from cardperso.lettershop.carrier import CarrierPrinter
from cardperso.lettershop.config import LettershopConfig
from cardperso.lettershop.inserter import Fault, Inserter, contents_for
from cardperso.lettershop.layout import FontSet
from cardperso.lettershop.mailer import MailerPrinter
from cardperso.lettershop.manifest import ManifestFiles, check_separation, write_manifest
from cardperso.lettershop.pieces import (
    Letter,
    Piece,
    PieceKind,
    PieceStatus,
    carrier_code,
)
from cardperso.lettershop.presort import (
    assign_trays,
    posting_day,
    posting_day_after,
    posting_day_before,
    presort_key,
    presort_order,
    split_days,
)
from cardperso.lettershop.source import BatchInfo, batch_info, read_letters
from cardperso.production import audit
from cardperso.production.crypto_fields import FieldCipher
from cardperso.production.db import Database
from cardperso.production.models import AuditLog, BatchState
from cardperso.production.operators import Action, Principal, authorize

__all__ = [
    "AUDIT_ACTION",
    "LETTERSHOP_ACTION",
    "FaultKey",
    "LettershopResult",
    "run_lettershop",
]

AUDIT_ACTION = "lettershop_run"
LETTERSHOP_ACTION: Action = cast(Action, getattr(Action, "RUN_LETTERSHOP", Action.START_BATCH))
"""The operator permission for a lettershop run: ``Action.RUN_LETTERSHOP`` where the
operators module has it, else the line's ``START_BATCH`` (supervisors and operators)."""

FaultKey = tuple[PieceKind, str]
"""(kind of piece, record reference) - where a test or a drill injects a fault."""


@dataclass
class LettershopResult:
    """What a run made (paths relative to :attr:`folder`)."""

    batch: BatchInfo
    folder: Path
    carriers: list[Piece]
    mailers: list[Piece]
    tests: list[Piece]
    manifest: ManifestFiles
    carrier_documents: list[Path] = field(default_factory=list)
    mailer_documents: list[Path] = field(default_factory=list)
    test_documents: list[Path] = field(default_factory=list)

    @property
    def diverted(self) -> list[Piece]:
        return [p for p in [*self.carriers, *self.mailers] if p.status is PieceStatus.DIVERTED]

    def lines(self) -> list[str]:
        """A short human-readable summary (no cardholder data)."""

        def count(pieces: Sequence[Piece], status: PieceStatus) -> int:
            return sum(p.status is status for p in pieces)

        d = PieceStatus.DISPATCHED
        days = sorted({p.day for p in self.carriers if p.status is d})
        mdays = sorted({p.day for p in self.mailers if p.status is d})
        out = [
            f"batch {self.batch.batch_id} ({self.batch.reference}): "
            f"{len(self.carriers)} cards through the lettershop",
            f"  carriers: {count(self.carriers, d)} posted, "
            f"{count(self.carriers, PieceStatus.DIVERTED)} diverted"
            + (f"; days {days[0]} to {days[-1]}" if days else ""),
            f"  PIN mailers: {count(self.mailers, d)} posted, "
            f"{count(self.mailers, PieceStatus.DIVERTED)} diverted, "
            f"{count(self.mailers, PieceStatus.HELD)} held"
            + (f"; days {mdays[0]} to {mdays[-1]}" if mdays else ""),
        ]
        if self.tests:
            out.append(
                f"  test letters: {count(self.tests, d)} posted on {self.tests[0].day} "
                f"to {self.tests[0].country} {self.tests[0].region}"
            )
        for p in self.diverted[:10]:
            out.append(f"    diverted {p.envelope} ({p.kind.value} {p.record_ref}): {p.reason}")
        return out


def _previous_run(db: Database, batch_id: int) -> int | None:
    with db.reader() as s:
        return s.scalars(
            select(AuditLog.seq).where(
                AuditLog.action == AUDIT_ACTION,
                AuditLog.object == f"batch:{batch_id}",
                AuditLog.result == "ok",
            )
        ).first()


def _start(db: Database, batch_id: int, by: Principal) -> BatchInfo:
    obj = f"batch:{batch_id}"
    with db.transaction() as s:
        authorize(s, by, LETTERSHOP_ACTION, obj, db.now())
        info = batch_info(s, batch_id)
    problem = None
    if info.state != BatchState.DONE.value:
        problem = f"batch {batch_id} is {info.state}: the lettershop takes finished batches"
    else:
        seq = _previous_run(db, batch_id)
        if seq is not None:
            problem = (
                f"batch {batch_id} went through the lettershop already (audit record {seq}); "
                "PIN mailers are printed once"
            )
    if problem:
        _record(db, by, batch_id, "refused", {"reason": problem})
        raise InputError(problem, field="batch")
    return info


def _record(
    db: Database, by: Principal, batch_id: int, result: str, detail: dict[str, object]
) -> None:
    with db.transaction() as s:
        audit.append(
            s,
            actor=by.name,
            action=AUDIT_ACTION,
            obj=f"batch:{batch_id}",
            result=result,
            when=db.now(),
            detail=detail,
        )


class _Run:
    """One run's state: the settings, the output folder, the inserters."""

    def __init__(
        self,
        info: BatchInfo,
        folder: Path,
        config: LettershopConfig,
        faults: Mapping[FaultKey, Fault],
    ) -> None:
        self.info, self.folder, self.config, self.faults = info, folder, config, faults
        self.fonts = FontSet(config.font_file)
        seed = f"{config.seed}/{info.batch_id}"
        self.carrier_inserter = Inserter(config.weights, config.postage, f"{seed}/carriers")
        self.mailer_inserter = Inserter(config.weights, config.postage, f"{seed}/mailers")

    def write(self, rel: str, data: bytes) -> str:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return rel

    def check(self, letters: Sequence[Letter], mailers: MailerPrinter) -> None:
        """Refuse the run before printing anything if any letter cannot be printed."""
        probe = CarrierPrinter(self.config.carrier, self.fonts, self.info.issuer, date.min)
        problems: list[str] = []
        for letter in letters:
            problem = probe.check(letter)
            if problem is None and letter.pins:
                problem = mailers.check(letter)
            if problem:
                problems.append(f"record {letter.record_ref}: {problem}")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise InputError("; ".join(problems[:3]) + more, field="letters")

    # -- carriers -------------------------------------------------------------------------

    def carriers(self, letters: Sequence[Letter], first: date) -> list[Piece]:
        cfg = self.config
        ordered = presort_order(letters, cfg.presort)
        days = split_days(
            ordered, first, cfg.daily_capacity, cfg.presort.tray_size, cfg.posting_weekdays
        )
        pieces: list[Piece] = []
        n = 0
        for day, todays in days:
            printer = CarrierPrinter(cfg.carrier, self.fonts, self.info.issuer, day)
            rel = f"carriers/carriers-{day.isoformat()}.pdf"
            batch: list[Piece] = []
            for letter in todays:
                n += 1
                country, region, local = presort_key(letter, cfg.presort)
                code = carrier_code(letter.batch_id, letter.seq, letter.chip_serial)
                piece = Piece(
                    PieceKind.CARRIER,
                    f"C{letter.batch_id}-{n:07d}",
                    letter.record_ref,
                    letter.seq,
                    country,
                    region,
                    local,
                    day,
                    chip_serial=letter.chip_serial,
                    pan_last4=letter.last4,
                    code=code,
                    document=rel,
                )
                piece.page = printer.add(letter, code)
                batch.append(piece)
            self.write(rel, printer.finish())
            self._insert(self.carrier_inserter, batch)
            assign_trays(batch, cfg.presort)
            pieces += batch
        return pieces

    def _insert(self, inserter: Inserter, pieces: Sequence[Piece]) -> None:
        for i, piece in enumerate(pieces):
            fault = self.faults.get((piece.kind, piece.record_ref))
            other = pieces[(i + 1) % len(pieces)].chip_serial if len(pieces) > 1 else ""
            inserter.run(piece, contents_for(piece, fault, other or "UNREAD"))

    # -- PIN mailers ----------------------------------------------------------------------

    def mailers(
        self, letters: Sequence[Letter], cards: Sequence[Piece], printer: MailerPrinter
    ) -> list[Piece]:
        cfg = self.config
        by_ref = {p.record_ref: p for p in cards}
        scheduled: dict[date, list[tuple[Letter, Piece]]] = {}
        held: list[Piece] = []
        n = 0
        for letter in presort_order(letters, cfg.presort):
            if not letter.pins:
                continue
            card = by_ref[letter.record_ref]
            n += 1
            delay = cfg.mailer_delay_days or letter.mailer_delay_days or 1
            day = posting_day(card.day + timedelta(days=max(delay, 1)), cfg.posting_weekdays)
            piece = Piece(
                PieceKind.PIN_MAILER,
                f"M{letter.batch_id}-{n:07d}",
                letter.record_ref,
                letter.seq,
                card.country,
                card.region,
                card.local,
                day,
                pan_last4=letter.last4,
                card_envelope=card.envelope,
            )
            if card.status is not PieceStatus.DISPATCHED:
                piece.status = PieceStatus.HELD
                piece.reason = f"its card ({card.envelope}) was diverted: held until it is posted"
                held.append(piece)
                continue
            scheduled.setdefault(day, []).append((letter, piece))
        pieces: list[Piece] = []
        for day in sorted(scheduled):
            batch = []
            for letter, piece in scheduled[day]:
                rel = f"pin-mailers/{day.isoformat()}/{piece.envelope}.pdf"
                piece.code = piece.envelope
                piece.document = self.write(rel, printer.print(letter, piece.envelope, day))
                batch.append(piece)
            self._insert(self.mailer_inserter, batch)
            assign_trays(batch, cfg.presort)
            pieces += batch
        return pieces + held

    # -- test letters ---------------------------------------------------------------------

    def tests(
        self, letters: Sequence[Letter], first: date
    ) -> tuple[list[Piece], dict[str, object] | None]:
        tl = self.config.test_letters
        if tl.count == 0 or not letters:
            return [], None
        if tl.region:
            country, region = tl.region.split(":")
        else:
            counts = Counter(presort_key(x, self.config.presort)[:2] for x in letters)
            country, region = counts.most_common(1)[0][0]
        day = posting_day_before(first, tl.days_before, self.config.posting_weekdays)
        model = letters[0]
        printer = CarrierPrinter(self.config.carrier, self.fonts, self.info.issuer, day, test=True)
        rel = f"test-letters/test-letters-{day.isoformat()}.pdf"
        pieces: list[Piece] = []
        for n in range(1, tl.count + 1):
            address = (
                tl.recipients[(n - 1) % len(tl.recipients)]
                if tl.recipients
                else (
                    f"Postal test panel, receiver {n}",
                    f"c/o {self.info.issuer} lettershop",
                    f"Postal region {country} {region}",
                    country,
                )
            )
            ref = f"TEST-{n:04d}"
            serial = f"TEST{self.info.batch_id:06d}{n:06d}"
            letter = Letter(
                batch_id=self.info.batch_id,
                seq=n,
                record_ref=ref,
                pan_masked="",
                chip_serial=serial,
                presort=(country, region, f"{n:04d}"),
                card_offset_mm=model.card_offset_mm,
                address=tuple(address),
                greeting=f"Test letter {n} of {tl.count}",
                carrier_template=model.carrier_template,
            )
            problem = printer.check(letter)
            if problem:
                raise InputError(f"test letter {n}: {problem}", field="test_letters")
            code = f"TL1:{self.info.batch_id}:{n}:{serial}"
            piece = Piece(
                PieceKind.TEST_LETTER,
                f"T{self.info.batch_id}-{n:07d}",
                ref,
                n,
                country,
                region,
                f"{n:04d}",
                day,
                chip_serial=serial,
                code=code,
                document=rel,
            )
            piece.page = printer.add(letter, code)
            pieces.append(piece)
        self.write(rel, printer.finish())
        seed = f"{self.config.seed}/{self.info.batch_id}/tests"
        self._insert(Inserter(self.config.weights, self.config.postage, seed), pieces)
        assign_trays(pieces, self.config.presort)
        target = {
            "country": country,
            "region": region,
            "day": day.isoformat(),
            "days_before_mailing": tl.days_before,
            "count": tl.count,
        }
        return pieces, target


def _first_day(cfg: LettershopConfig, today: date) -> date:
    """The carriers' first posting day: the settings' day, else today - or, with test
    letters, today for the test letters and the mailing ``days_before`` posting days on."""
    days = cfg.posting_weekdays
    tl = cfg.test_letters
    if cfg.first_day is not None:
        first = posting_day(cfg.first_day, days)
        if tl.count and posting_day_before(first, tl.days_before, days) < today:
            raise InputError(
                f"the test letters would be posted before today: set first_day at least "
                f"{tl.days_before} posting days ahead",
                field="first_day",
            )
        return first
    first = posting_day(today, days)
    if tl.count:
        first = posting_day_after(first, tl.days_before, days)
    return first


def run_lettershop(
    db: Database,
    hsm: Hsm,
    batch_id: int,
    out_dir: Path,
    *,
    by: Principal,
    cipher: FieldCipher,
    config: LettershopConfig | None = None,
    today: date | None = None,
    faults: Mapping[FaultKey, Fault] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> LettershopResult:
    """Run a finished batch through the lettershop (see the module notes).

    ``cipher`` opens the sealed records (derived in the HSM by a role that may, e.g.
    :func:`cardperso.production.fieldkeys.field_cipher`); the PIN mailers are printed in a
    session of the ``lettershop`` role. ``faults`` injects inserter faults (tests,
    drills)."""
    cfg = config or LettershopConfig()
    info = _start(db, batch_id, by)
    final = out_dir / f"lettershop-batch-{batch_id}"
    if final.exists():
        raise InputError(f"{final} exists", field="out")
    partial = out_dir / f".lettershop-batch-{batch_id}.partial-{os.getpid()}"
    try:
        with db.reader() as s:
            letters = read_letters(s, batch_id, cipher)
        if not letters:
            raise InputError(f"batch {batch_id} has no good card", field="batch")
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        run = _Run(info, partial, cfg, faults or {})
        first = _first_day(cfg, today or db.now().date())
        with hsm.session(Role.LETTERSHOP, f"lettershop/{by.name}") as session:
            printer = MailerPrinter(session, cfg.mailer, run.fonts, info.issuer)
            run.check(letters, printer)
            log(f"{len(letters)} good cards: printing carriers")
            cards = run.carriers(letters, first)
            log("printing PIN mailers inside the HSM")
            mailers = run.mailers(letters, cards, printer)
        tests, target = run.tests(letters, first)
        pairs = check_separation(cards, mailers)
        head = {
            "batch": info.as_dict(),
            "run": {
                "operator": by.name,
                "first_day": first.isoformat(),
                "mailer_delay_days": cfg.mailer_delay_days,
                "separation_checked": pairs,
                "weights": cfg.weights.model_dump(),
                "postage": [c.model_dump() for c in cfg.postage],
            },
        }
        classes = [c.name for c in cfg.postage]
        manifest = write_manifest(partial, head, cards, mailers, tests, target, classes)
        partial.rename(final)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        with contextlib.suppress(Exception):  # the run's own error is the one to see
            _record(db, by, batch_id, "failed", {"error": type(e).__name__})
        raise
    result = LettershopResult(
        info,
        final,
        cards,
        mailers,
        tests,
        ManifestFiles(
            final / manifest.json.name,
            final / manifest.csv.name,
            final / manifest.pieces.name,
            final / manifest.test_letters.name if manifest.test_letters else None,
        ),
        sorted({final / p.document for p in cards}),
        [final / p.document for p in mailers if p.document],
        sorted({final / p.document for p in tests}),
    )
    sent = PieceStatus.DISPATCHED
    _record(
        db,
        by,
        batch_id,
        "ok",
        {
            "carriers": len(cards),
            "carriers_posted": sum(p.status is sent for p in cards),
            "mailers_posted": sum(p.status is sent for p in mailers),
            "diverted": len(result.diverted),
            "held": sum(p.status is PieceStatus.HELD for p in mailers),
            "test_letters": len(tests),
            "first_day": first.isoformat(),
        },
    )
    return result
