"""The line: N chip-encoding modules in parallel, the finishing stations, the database.

Threads mirror the machine. Each chip-encoding module is a thread: it claims the
next job and a stock card in one transaction (:func:`repo.begin_attempt`: the
attempt is recorded *before* the card enters the module), runs the chip stations
(:mod:`.modules`) and puts the card on the transport to the finishing stations. One
finishing thread takes cards in order through the magnetic stripe, visual and QC
stations and ends each attempt in one transaction: good (stacker) or rejected
(reject bin, chip spoiled, job pending again, so the next free module remakes it on
a new card linked to the failed attempt). A bounded buffer between the modules
and the finishing stations keeps the slowest station busy without letting
unlimited cards pile up on the transport.

Crash safety: :meth:`Line.run` first runs :func:`repo.recover_in_flight` (every
attempt still open from a killed run - a card that was in a module or on the
transport - is rejected "interrupted" and its job remade). A card leaves for the
good stacker only when its ``mark_good`` is committed, so a record is never made
twice; a card whose result was not committed is in the reject bin after recovery.

Stock and initialization: blank stock is initialized in the module by the
profile's ``loading.method`` (or :attr:`LineConfig.init_method`): logically, or by
memory image - one image per run, from the card vendor's offline builder
(:meth:`~cardperso.line.imageinit.ImagePlan.offline`), so no golden card with a
dump routine is needed on the floor. Pre-initialized stock is claimed by the
batch's product (the profile code) and must have been initialized for the batch's
profile version (:func:`cardperso.production.stock.check_initialized_stock`); a
product whose records carry data for the initialization phase cannot use it.

Time: the line runs as fast as the host lets it. Each card's modeled machine time
per stage (:mod:`.timing`) is recorded with its attempt, and :func:`pipeline`
turns them into modeled cards per hour for N modules and names the limiting
station. Host CPU per card is the process's CPU time less the time spent inside
the simulated cards (a real card computes on its own chip).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardperso.crypto.rand import RandomSource, SeededRandom, SystemRandom
from cardperso.dataprep.init_script import InitScript, build_init_script
from cardperso.dataprep.prepared import PreparedCard
from cardperso.errors import CardpersoError
from cardperso.hsm import Hsm
from cardperso.line.feeder import CpuMeter, Feeder
from cardperso.line.imageinit import ImagePlan
from cardperso.line.magstripe import StripeFault
from cardperso.line.modules import ChipModule, ModuleStats
from cardperso.line.qc.chipproof import proof_plan
from cardperso.line.qc.config import QcConfig
from cardperso.line.stations import (
    CardInLine,
    MagstripeStation,
    QcStation,
    StationResult,
    VisualFault,
    VisualStation,
)
from cardperso.line.timing import (
    CHIP,
    MAGSTRIPE,
    QC,
    STACKER,
    STATIONS,
    VISUAL,
    LineTiming,
    PipelineResult,
    pipeline,
)
from cardperso.production import audit, repo, stock
from cardperso.production.crypto_fields import FieldCipher
from cardperso.production.db import Database, HotPath
from cardperso.production.models import Batch, CardJob, JobState, StockKind
from cardperso.production.models import Profile as ProfileRow
from cardperso.profiles.loader import parse_profile
from cardperso.profiles.schema import LoadingMethod

__all__ = [
    "CHIP_ENTRY",
    "FINISH_ENTRY",
    "Line",
    "LineConfig",
    "LineProgress",
    "LineStopped",
    "RunResult",
]

CHIP_ENTRY = "chip_module"
"""The attempt's station entry written when the card leaves its module."""
FINISH_ENTRY = "finishing"
"""The entry written with the attempt's outcome (stripe, visual, QC, modeled stages)."""


class LineStopped(CardpersoError):
    """The line stopped before the batch was done (no stock, every module out of service)."""

    exit_code = 6


@dataclass
class LineConfig:
    """How the line is set up for a run."""

    modules: int = 4
    timing: LineTiming = field(default_factory=LineTiming)
    stock_kind: StockKind = StockKind.BLANK
    init_method: LoadingMethod | None = None
    """How blank stock is initialized; None: the profile's ``loading.method``."""
    card_secret: str = "CARD.SECRET"  # noqa: S105 - a key label
    fail_limit: int = 3
    buffer: int = 8
    px_per_mm: float = 8.0
    faces_dir: Path | None = None
    keep_faces: int = 0
    seed: str | None = None
    """Seed for the host's random challenges (repeatable runs); None: the system RNG."""
    checkpoint: bool = False
    """Also record the chip module's result in its own transaction as the card leaves
    it (one more transaction per card). Off by default: the attempt is recorded before
    the card enters the module and the chip result is written with the card's end, so
    a crash loses only the detail of cards in flight, which are rejected anyway."""
    stripe_fault: StripeFault | None = None
    visual_fault: VisualFault | None = None
    qc: QcConfig = field(default_factory=QcConfig)
    """What the QC station checks and how often (:class:`~cardperso.line.qc.QcConfig`)."""
    max_cards: int | None = None
    """Stop claiming after this many cards (tests, a shift's end)."""
    progress_every_s: float = 0.25
    commit_group: int = 16
    """Cards finished in one transaction at most (those already waiting on the transport)."""


@dataclass(frozen=True)
class LineProgress:
    """A snapshot for a live display."""

    total_jobs: int
    good_jobs: int
    cards: int
    good: int
    rejected: int
    remakes: int
    in_flight: int
    stations: dict[str, int]
    wall_s: float
    rate_per_s: float
    eta_s: float | None
    modeled_cards_per_hour: float
    limiting_station: str


@dataclass
class RunResult:
    """What one run of the line did."""

    batch_id: int
    modules: int
    cards: int = 0
    good: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    remakes: int = 0
    stages: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    card_cpu_s: float = 0.0
    """CPU spent inside the simulated cards (a real card computes on its own chip)."""
    equipment_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU of the other simulated machines, by machine: the stripe encoder's heads,
    the embosser/laser/printer's raster, the QC camera's image analysis. On a line
    each runs on its own controller; the host sends data and reads verdicts."""
    module_stats: dict[str, ModuleStats] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    batch_done: bool = False
    faces: list[Path] = field(default_factory=list)

    @property
    def host_cpu_s(self) -> float:
        """Process CPU less the simulated cards and machines: the bureau host's share."""
        return max(self.cpu_s - self.card_cpu_s - sum(self.equipment_cpu_s.values()), 0.0)

    def host_cpu_ms_per_card(self) -> float:
        return self.host_cpu_s * 1000 / self.cards if self.cards else 0.0

    def card_cpu_ms_per_card(self) -> float:
        return self.card_cpu_s * 1000 / self.cards if self.cards else 0.0

    def equipment_cpu_ms_per_card(self) -> dict[str, float]:
        n = self.cards or 1
        return {k: v * 1000 / n for k, v in self.equipment_cpu_s.items()}

    def modeled(self, modules: int | None = None) -> PipelineResult:
        return pipeline(self.stages, modules or self.modules)

    def audit_detail(self) -> dict[str, Any]:
        model = self.modeled()
        return {
            "modules": self.modules,
            "cards": self.cards,
            "good": self.good,
            "rejected": sum(self.rejected.values()),
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "card_cpu_s": round(self.card_cpu_s, 3),
            "equipment_cpu_s": round(sum(self.equipment_cpu_s.values()), 3),
            "modeled_cards_per_hour": round(model.cards_per_hour, 1),
            "limiting_station": model.limiting_station,
            "stopped": self.stopped,
            "out_of_service": sorted(m for m, s in self.module_stats.items() if s.out_of_service),
        }


_SENTINEL = object()


class Line:
    """The personalization line over one database, one HSM and one feeder."""

    def __init__(
        self,
        db: Database,
        hsm: Hsm,
        cipher: FieldCipher,
        feeder: Feeder,
        config: LineConfig | None = None,
        *,
        actor: str = "line",
    ) -> None:
        self.db = db
        self.hsm = hsm
        self.cipher = cipher
        self.feeder = feeder
        self.config = config or LineConfig()
        self.actor = actor
        self._scripts: dict[int, InitScript] = {}
        self._product: str | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._inflight = 0  # cards claimed and not yet finished
        self._claiming = 0  # modules inside a claim transaction
        self._released = 0  # cards finished so far (a reject may bring a job back)
        self._claimed = 0
        self._done = False
        self._errors: list[BaseException] = []
        self._stopped: str | None = None

    # -- the run ------------------------------------------------------------------------

    def run(
        self, batch_id: int, progress: Callable[[LineProgress], None] | None = None
    ) -> RunResult:
        """Recover what a crash left, then make cards until no job is pending."""
        cfg = self.config
        if cfg.modules < 1:
            raise CardpersoError("a line needs at least one chip module")
        result = RunResult(batch_id, cfg.modules)
        with self.db.transaction() as s:
            rec = repo.recover_in_flight(s, batch_id, when=self.db.now(), actor=self.actor)
            result.recovered = rec.as_detail()
            batch = s.get(Batch, batch_id)
            if batch is None:
                raise CardpersoError(f"no batch {batch_id}")
            row = s.get(ProfileRow, batch.profile_id)
            assert row is not None
            profile = parse_profile(row.yaml_text, f"{row.code}.yaml")
            start = repo.progress(s, batch_id)
            pre_initialized = cfg.stock_kind is StockKind.PRE_INITIALIZED
            if pre_initialized:
                stock.check_initialized_stock(s, row.code, row.version)
                self._product = row.code
                self._check_records_fit(s, batch_id)
        script = build_init_script(profile)
        method = cfg.init_method or profile.loading.method
        image = (
            ImagePlan.offline(script)
            if method is LoadingMethod.IMAGE and not pre_initialized
            else None
        )
        meter = CpuMeter()
        modules = [
            ChipModule(
                f"M{i + 1:02d}",
                self.feeder,
                self.hsm,
                cfg.timing,
                self._rng(f"M{i + 1:02d}"),
                meter,
                card_secret=cfg.card_secret,
                pre_initialized=pre_initialized,
                image=image,
                fail_limit=cfg.fail_limit,
                proof_plan=partial(proof_plan, profile) if cfg.qc.hsm_check else None,
            )
            for i in range(cfg.modules)
        ]
        equipment = {name: CpuMeter() for name in ("encoder", "printer", "camera")}
        stations = (
            MagstripeStation(cfg.timing, cfg.stripe_fault, meter=equipment["encoder"]),
            VisualStation(
                cfg.timing,
                px_per_mm=cfg.px_per_mm,
                faces_dir=cfg.faces_dir,
                keep_faces=cfg.keep_faces,
                fault=cfg.visual_fault,
                meter=equipment["printer"],
            ),
            QcStation(cfg.timing, cfg.qc, meter=equipment["camera"]),
        )
        transport: queue.Queue[Any] = queue.Queue(maxsize=max(cfg.buffer, 1))
        tracker = _Tracker(start.total, start.jobs[JobState.GOOD], progress, cfg.progress_every_s)
        tracker.modules = cfg.modules
        cpu0, wall0 = time.process_time(), time.perf_counter()
        threads = [
            threading.Thread(
                target=self._guard,
                args=(self._module_loop, m, batch_id, script, transport),
                daemon=True,
            )
            for m in modules
        ]
        finisher = threading.Thread(
            target=self._guard,
            args=(self._finish_loop, stations, transport, result, tracker),
            daemon=True,
        )
        finisher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        transport.put(_SENTINEL)
        finisher.join()
        result.wall_s = time.perf_counter() - wall0
        result.cpu_s = time.process_time() - cpu0
        result.card_cpu_s = meter.seconds
        result.equipment_cpu_s = {name: m.seconds for name, m in equipment.items()}
        result.module_stats = {m.module_id: m.stats for m in modules}
        result.faces = list(stations[1].kept)
        for m in modules:
            m.close()
        stations[2].close()
        if self._errors:
            raise self._errors[0]
        if self._stopped is None and all(m.stats.out_of_service for m in modules):
            self._stopped = "every chip module is out of service"
        result.stopped = self._stopped
        with self.db.transaction() as s:
            result.batch_done = repo.complete_if_done(s, batch_id, when=self.db.now())
            audit.append(
                s,
                actor=self.actor,
                action="line_run",
                obj=f"batch:{batch_id}",
                result="done" if result.batch_done else (result.stopped or "partial"),
                when=self.db.now(),
                detail=result.audit_detail(),
            )
        tracker.emit(self._inflight, force=True)
        return result

    def stop(self) -> None:
        """Stop claiming; cards already in modules are finished."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    # -- helpers ------------------------------------------------------------------------

    def _rng(self, module_id: str) -> RandomSource:
        if self.config.seed is None:
            return SystemRandom()
        return SeededRandom(f"{self.config.seed}/{module_id}")

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as e:  # a thread's failure stops the line, run() re-raises it
            self._errors.append(e)
            self.stop()

    def _check_records_fit(self, s: Session, batch_id: int) -> None:
        """Refuse pre-initialized stock for records with data for the initialization
        phase (an update condition personalization can never meet, such as a SIM's
        EF.ICCID): such a card would fail in every module. One pending record tells,
        since a profile plans every record alike."""
        row = s.execute(
            select(CardJob.seq, CardJob.record_blob)
            .where(CardJob.batch_id == batch_id, CardJob.state == JobState.PENDING)
            .order_by(CardJob.seq)
            .limit(1)
        ).first()
        if row is None:
            return
        prepared = PreparedCard.from_line(
            self.cipher.open(row.record_blob, repo.record_aad(batch_id, row.seq))
        )
        if prepared.init_steps:
            raise LineStopped(
                "this batch's records carry data written before initialization ends "
                "(an update condition personalization cannot meet); they need blank stock"
            )

    def _release(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._released += 1
            self._cond.notify_all()

    def _claim(self, module_id: str, batch_id: int, hot: HotPath) -> CardInLine | None:
        cfg = self.config
        with self._cond:
            if self._stop.is_set() or self._done:
                return None
            if cfg.max_cards is not None and self._claimed >= cfg.max_cards:
                return None
            self._claiming += 1
            self._claimed += 1
        claim: repo.LineClaim | None = None
        try:
            with hot.transaction() as s:
                claim = repo.claim_for_module(
                    s,
                    batch_id,
                    module_id,
                    when=self.db.now(),
                    kind=cfg.stock_kind,
                    product=self._product,
                )
        except repo.OutOfStock as e:
            self._stopped = str(e)
            self.stop()
            return None
        finally:
            with self._cond:
                self._claiming -= 1
                if claim is None:
                    self._claimed -= 1
                else:
                    self._inflight += 1
                self._cond.notify_all()
        if claim is None:
            return None
        try:
            blob = self.cipher.open(claim.record_blob, repo.record_aad(claim.batch_id, claim.seq))
            prepared = PreparedCard.from_line(blob)
        except BaseException:
            self._release()
            raise
        return CardInLine(
            claim.attempt_id,
            claim.job_id,
            claim.attempt_no,
            claim.record_ref,
            claim.chip_serial,
            module_id=module_id,
            prepared=prepared,
        )

    def _idle(self, released_before: int) -> bool:
        """No job was pending: wait until a card in flight finishes (a reject brings
        its job back: claim again) or none is left (the run is done).

        Only real cards count: a module that finds nothing does not claim again until
        some card has finished, so idle modules cannot keep each other waiting."""
        with self._cond:
            while True:
                if self._done or self._stop.is_set():
                    return False
                if self._released != released_before:
                    return True  # a card finished since our claim: look again
                if self._inflight == 0 and self._claiming == 0:
                    self._done = True
                    self._cond.notify_all()
                    return False
                self._cond.wait(timeout=0.5)

    def _module_loop(
        self, module: ChipModule, batch_id: int, script: InitScript, transport: queue.Queue[Any]
    ) -> None:
        hot = self.db.hot_path()
        try:
            self._make_cards(module, batch_id, script, transport, hot)
        finally:
            hot.close()

    def _make_cards(
        self,
        module: ChipModule,
        batch_id: int,
        script: InitScript,
        transport: queue.Queue[Any],
        hot: HotPath,
    ) -> None:
        while not module.stats.out_of_service:
            with self._cond:
                released_before = self._released
            card = self._claim(module.module_id, batch_id, hot)
            if card is None:
                if self._stop.is_set() or (
                    self.config.max_cards is not None and self._claimed >= self.config.max_cards
                ):
                    return
                if self._idle(released_before):
                    continue
                return
            try:
                module.process(card, script)
                if self.config.checkpoint:
                    with hot.transaction() as s:
                        repo.record_station(
                            s,
                            card.attempt_id,
                            CHIP_ENTRY,
                            card.failed is None,
                            when=self.db.now(),
                            detail=_chip_detail(card),
                        )
            except BaseException:
                self._release()
                raise
            transport.put(card)

    def _finish_loop(
        self,
        stations: tuple[MagstripeStation, VisualStation, QcStation],
        transport: queue.Queue[Any],
        result: RunResult,
        tracker: _Tracker,
    ) -> None:
        """Take cards off the transport through the finishing stations.

        Cards that are already waiting on the transport are finished together, in
        one transaction (group commit): the stacker releases them only once it is
        committed, so a crash before it leaves them all in the reject bin."""
        hot = self.db.hot_path()
        try:
            self._finish_cards(stations, transport, result, tracker, hot)
        finally:
            hot.close()

    def _finish_cards(
        self,
        stations: tuple[MagstripeStation, VisualStation, QcStation],
        transport: queue.Queue[Any],
        result: RunResult,
        tracker: _Tracker,
        hot: HotPath,
    ) -> None:
        timing = self.config.timing
        group = max(self.config.commit_group, 1)
        while True:
            cards: list[CardInLine] = []
            end = False
            item = transport.get()
            while True:
                if item is _SENTINEL:
                    end = True
                    break
                cards.append(item)
                if len(cards) >= group:
                    break
                try:
                    item = transport.get_nowait()
                except queue.Empty:
                    break
            outcomes: list[StationResult | None] = []
            try:
                for card in cards:
                    outcomes.append(self._finishing_stations(card, stations, timing))
                if cards:
                    with hot.transaction() as s:
                        when = self.db.now()
                        for card, failed in zip(cards, outcomes, strict=True):
                            self._finish(s, when, card, failed)
            finally:
                for _ in cards:
                    self._release()
            for card, failed in zip(cards, outcomes, strict=True):
                result.cards += 1
                result.stages.append(dict(card.stages))
                result.remakes += card.attempt_no > 1
                if failed is None:
                    result.good += 1
                else:
                    result.rejected[f"{failed.station}: {failed.reason}"] += 1
                tracker.card(card, failed is None, self._inflight)
            if end:
                return

    @staticmethod
    def _finishing_stations(
        card: CardInLine,
        stations: tuple[MagstripeStation, VisualStation, QcStation],
        timing: LineTiming,
    ) -> StationResult | None:
        """Stripe, visual and QC for one card; the first failure, or None."""
        if card.failed is None:
            mag, visual, qc = stations
            steps: tuple[tuple[Callable[[CardInLine], StationResult], str], ...] = (
                (mag.process, MAGSTRIPE),
                (visual.process, VISUAL),
                (qc.process, QC),
            )
            for process, stage in steps:
                r = process(card)
                card.results.append(r)
                card.stages[stage] = r.modeled_s
                if not r.ok:
                    break
        failed = card.failed
        if failed is None:
            card.stages[STACKER] = timing.stacker()
        return failed

    def _finish(
        self, s: Session, when: datetime, card: CardInLine, failed: StationResult | None
    ) -> None:
        detail: dict[str, Any] = {
            "stations": {r.station: r.as_detail() for r in card.results if r.station in _FINISHING},
            "stages": {k: round(v, 5) for k, v in card.stages.items()},
        }
        if card.collected:
            detail["collected"] = {k: v.hex().upper() for k, v in card.collected.items()}
        chip = () if self.config.checkpoint else ((CHIP_ENTRY, _chip_detail(card)),)
        if failed is None:
            repo.mark_good(s, card.attempt_id, when=when, stations=(*chip, (FINISH_ENTRY, detail)))
            return
        if chip:
            repo.record_station(s, card.attempt_id, CHIP_ENTRY, True, when=when, detail=chip[0][1])
        repo.record_station(s, card.attempt_id, FINISH_ENTRY, False, when=when, detail=detail)
        repo.reject(
            s,
            card.attempt_id,
            station=failed.station,
            reason=failed.reason or "failed",
            when=when,
            actor=f"module:{card.module_id}",
        )


_FINISHING = frozenset({"magstripe", "visual", "qc"})


def _chip_detail(card: CardInLine) -> dict[str, Any]:
    return {
        "module": card.module_id,
        "stations": {r.station: r.as_detail() for r in card.results if r.station not in _FINISHING},
        "retried": card.retried,
    }


class _Tracker:
    """Counts for the live display; calls the progress callback now and then."""

    def __init__(
        self,
        total: int,
        good_before: int,
        callback: Callable[[LineProgress], None] | None,
        every_s: float,
    ) -> None:
        self.total = total
        self.good_jobs = good_before
        self.callback = callback
        self.every_s = every_s
        self.cards = self.good = self.rejected = self.remakes = 0
        self.stations: Counter[str] = Counter()
        self.load = dict.fromkeys(STATIONS, 0.0)
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.modules = 1

    def card(self, card: CardInLine, good: bool, in_flight: int) -> None:
        self.cards += 1
        self.remakes += card.attempt_no > 1
        if good:
            self.good += 1
            self.good_jobs += 1
        else:
            self.rejected += 1
        for r in card.results:
            if r.ok:
                self.stations[r.station] += 1
        for k, v in card.stages.items():
            self.load[k] += v
        self.emit(in_flight)

    def emit(self, in_flight: int, *, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        wall = now - self.t0
        rate = self.cards / wall if wall > 0 else 0.0
        remaining = self.total - self.good_jobs
        per_card = {
            k: v / max(self.cards, 1) / (self.modules if k == CHIP else 1)
            for k, v in self.load.items()
        }
        limiting = max(per_card, key=lambda k: per_card[k])
        slowest = per_card[limiting]
        self.callback(
            LineProgress(
                total_jobs=self.total,
                good_jobs=self.good_jobs,
                cards=self.cards,
                good=self.good,
                rejected=self.rejected,
                remakes=self.remakes,
                in_flight=in_flight,
                stations=dict(self.stations),
                wall_s=wall,
                rate_per_s=rate,
                eta_s=remaining / rate if rate > 0 else None,
                modeled_cards_per_hour=3600.0 / slowest if slowest > 0 else 0.0,
                limiting_station=limiting,
            )
        )
