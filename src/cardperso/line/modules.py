"""A chip-encoding module: one reader slot, and the chip stations a card passes in it.

A module takes a card from the feeder into its slot and runs, in order, the
``feeder`` check (ATR, PPS, the serial the chip reports against the stock record),
``init`` (skipped for pre-initialized stock), ``perso`` and ``chip_check``
(:mod:`.stations`). Each chip station talks to the card through a
:class:`~cardperso.line.chip.StepRunner` with an HSM session of its own role:
initialization, personalization and QC are separate rooms (the chapter, Figure
10.63) even inside one machine, so the personalization session never holds KD. A
module fed pre-initialized stock opens no initialization session at all.

**Initialization** is logical (the profile's file commands) or, with an
:class:`~cardperso.line.imageinit.ImagePlan`, by memory image: the image is written
at physical addresses and checked (:func:`~cardperso.line.imageinit.write_image`),
then the steps after it run as in logical mode (transport PINs, the record's own
initialization data, KD, SET LIFECYCLE INITIALIZED). Both are timed by the same
card model (``reader.elapsed``). A card that does not fit the image (another OS
version or memory layout, not blank) is rejected without a retry.

**Retry once, then reject.** When a card fails, the module powers it down and up
and retries from the failed step (:meth:`~cardperso.line.chip.StepRunner.resume`;
an image write starts again from its checks); a second failure rejects the card,
naming the station and the step.

**A module that keeps failing** is taken out of service after
``fail_limit`` cards in a row have failed in it; the other modules go on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cardperso.crypto.rand import RandomSource
from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import PreparedCard, Step
from cardperso.errors import ReaderError
from cardperso.hsm import Hsm, Role
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner, read_serial
from cardperso.line.feeder import CpuMeter, Feeder, MeteredReader
from cardperso.line.imageinit import ImageInitError, ImagePlan, ImageRefused, write_image
from cardperso.line.qc.chipproof import PAN_KEY, ChipProof, ProofPlan, collect_pan
from cardperso.line.stations import CardInLine, StationResult, chip_check_steps
from cardperso.line.timing import CHIP, FEEDER, LineTiming
from cardperso.readers import Reader

__all__ = ["ChipModule", "ModuleStats"]


@dataclass
class ModuleStats:
    cards: int = 0
    failed: int = 0
    retries: int = 0
    recovered: int = 0
    consecutive_failures: int = 0
    out_of_service: bool = False
    reason: str = ""
    hsm_calls: int = 0
    chip_s: float = 0.0


@dataclass
class _Sessions:
    init: KeyCache | None
    perso: KeyCache
    qc: KeyCache


@dataclass(frozen=True)
class _Station:
    name: str
    keys: KeyCache
    steps: tuple[Step, ...]
    power_cycle: bool = False
    image: ImagePlan | None = None


@dataclass
class ChipModule:
    """One chip-encoding module of the line (see the module notes)."""

    module_id: str
    feeder: Feeder
    hsm: Hsm
    timing: LineTiming
    rng: RandomSource
    meter: CpuMeter
    card_secret: str = "CARD.SECRET"  # noqa: S105 - a key label
    pre_initialized: bool = False
    image: ImagePlan | None = None
    """Initialize blank cards from this image (loading method ``image``); None: logically."""
    fail_limit: int = 3
    proof_plan: Callable[[PreparedCard], ProofPlan] | None = None
    """QC's HSM check of a card, run in the chip check's power-up (:mod:`.qc.chipproof`):
    the card's keys proved and its PIN objects' state read while it is still in the
    module's contacts, one power cycle less than at the QC station; None: QC does it."""
    stats: ModuleStats = field(default_factory=ModuleStats)
    _sessions: _Sessions | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sessions(self) -> _Sessions:
        if self._sessions is None:
            who = f"line module {self.module_id}"
            init = None if self.pre_initialized else self.hsm.session(Role.INITIALIZATION, who)
            self._sessions = _Sessions(
                None if init is None else KeyCache(init),
                KeyCache(self.hsm.session(Role.PERSONALIZATION, who)),
                KeyCache(self.hsm.session(Role.QC, who)),
            )
        return self._sessions

    def close(self) -> None:
        if self._sessions is not None:
            for cache in (self._sessions.init, self._sessions.perso, self._sessions.qc):
                if cache is not None:
                    cache.session.close()
            self._sessions = None

    # -- one card ---------------------------------------------------------------------

    def process(self, card: CardInLine, script: InitScript | None) -> None:
        """Run the chip stations on ``card``; results (and any failure) go on the card."""
        self.stats.cards += 1
        feeder_s = self.timing.feeder()
        card.stages[FEEDER] = feeder_s
        hsm_calls = 0
        reader: Reader | None = None
        try:
            if self.pre_initialized and card.prepared.init_steps:
                raise ChipFailure(
                    "init",
                    "the record has data to write before initialization ends; "
                    "pre-initialized stock cannot take it",
                )
            try:
                slot = self.feeder.insert(card.serial, self.module_id)
            except ReaderError as e:
                raise ChipFailure("feeder", f"card not fed: {e}") from None
            reader = MeteredReader(slot, self.meter)
            card.reader = reader
            serial = self._feed(card, reader, feeder_s)
            if serial is None:
                return
            s = self.sessions()
            plan: list[_Station] = []
            if not self.pre_initialized:
                if script is None or s.init is None:
                    raise ChipFailure("init", "no initialization script for this profile")
                per_card = card.prepared.init_steps
                if self.image is None:
                    plan.append(_Station("init", s.init, script.steps(per_card)))
                else:
                    steps = self.image.steps_after(per_card)
                    plan.append(_Station("init", s.init, steps, image=self.image))
            plan.append(_Station("perso", s.perso, card.prepared.script))
            checks = chip_check_steps(card.prepared.script)
            if self.proof_plan is not None:
                checks = collect_pan(checks)
            plan.append(_Station("chip_check", s.qc, checks, True))
            for st in plan:
                t0 = reader.elapsed
                runner = StepRunner(st.name, reader, st.keys, serial, self.rng, self.card_secret)
                detail: dict[str, object] = {"method": "logical"} if st.name == "init" else {}
                ok = None
                if st.image is not None:
                    ok = self._write_image(card, reader, st.image, serial, detail)
                if ok is None:
                    ok = self._run(card, runner, st.steps, st.power_cycle)
                direct = 0
                if ok is None and st.name == "chip_check" and self.proof_plan is not None:
                    direct = self._prove(card, runner, st)
                hsm_calls += runner.hsm_calls + direct
                card.collected.update(runner.collected)
                result = StationResult(
                    st.name,
                    ok is None,
                    reader.elapsed - t0 + (runner.hsm_calls + direct) * self.timing.hsm_call_s,
                    {"steps": len(st.steps), "hsm": runner.hsm_calls, **detail},
                    "" if ok is None else ok.reason,
                )
                card.results.append(result)
                if ok is not None:
                    return
        except ChipFailure as e:
            card.results.append(StationResult(e.station, False, 0.0, reason=e.reason))
        finally:
            elapsed = reader.elapsed if reader is not None else 0.0
            card.stages[CHIP] = self.timing.chip(elapsed, hsm_calls)
            self.stats.hsm_calls += hsm_calls
            self.stats.chip_s += card.stages[CHIP]
            if reader is not None:
                with contextlib.suppress(ReaderError):
                    reader.close()
            self._account(card)

    def _prove(self, card: CardInLine, runner: StepRunner, station: _Station) -> int:
        """QC's HSM check on the card that just passed the chip check; the HSM calls it
        made itself (those through ``runner`` are counted there)."""
        assert self.proof_plan is not None
        before = runner.hsm_calls
        prover = ChipProof(station.keys, self.rng, self.card_secret)
        plan = self.proof_plan(card.prepared)
        card.proof = prover.run_after_check(runner, plan, card.collected, station.steps)
        # The PAN read back for QC's cross-check is cardholder data: it stays in the
        # proof's verdict, never in what the card's record keeps (the database).
        runner.collected.pop(PAN_KEY, None)
        return card.proof.hsm_calls - (runner.hsm_calls - before)

    def _feed(self, card: CardInLine, reader: Reader, feeder_s: float) -> bytes | None:
        """Power the card up and check its serial (one retry); the serial, or None."""
        reason = ""
        for attempt in (1, 2):
            try:
                if attempt == 2:
                    card.retried = True
                    self.stats.retries += 1
                    reader.close()
                reader.reset()
                serial = read_serial(reader)
            except ReaderError as e:
                reason = f"card does not answer: {e}"
                continue
            if serial.hex().upper() != card.serial:
                reason = "the chip serial differs from the stock record"
                continue
            if attempt == 2:
                self.stats.recovered += 1
            card.results.append(StationResult("feeder", True, feeder_s, {"retried": attempt > 1}))
            return serial
        card.results.append(StationResult("feeder", False, feeder_s, reason=reason[:200]))
        return None

    def _write_image(
        self,
        card: CardInLine,
        reader: Reader,
        plan: ImagePlan,
        serial: bytes,
        detail: dict[str, object],
    ) -> ChipFailure | None:
        """Write the image with the card's single retry; the failure, or None."""
        detail["method"] = "image"
        failure = ChipFailure("init", "image: not written")
        for attempt in (1, 2):
            try:
                done = write_image(reader, plan.image, serial=serial)
            except ImageRefused as e:
                return ChipFailure("init", f"image refused: {e}")
            except ImageInitError as e:
                failure = ChipFailure("init", f"image: {e}")
            else:
                detail.update(pieces=done.pieces, rewrites=done.rewrites)
                if attempt == 2:
                    self.stats.recovered += 1
                return None
            if card.retried:
                return failure
            card.retried = True
            self.stats.retries += 1
            try:
                reader.close()
                reader.reset()
            except ReaderError as e:
                return ChipFailure("init", f"reset for the retry: {e}")
        return failure

    def _run(
        self, card: CardInLine, runner: StepRunner, steps: tuple[Step, ...], power_cycle: bool
    ) -> ChipFailure | None:
        """Run one station's steps with the card's single retry; the failure, or None."""
        try:
            if power_cycle:
                runner.resume(steps, 0)
            else:
                runner.run(steps)
            return None
        except ChipFailure as first:
            if card.retried:
                return first
            card.retried = True
            self.stats.retries += 1
            try:
                runner.resume(steps, max(first.index, 0))
            except ChipFailure as second:
                return second
            self.stats.recovered += 1
            return None

    def _account(self, card: CardInLine) -> None:
        with self._lock:
            if card.failed is None:
                self.stats.consecutive_failures = 0
                return
            self.stats.failed += 1
            self.stats.consecutive_failures += 1
            if self.stats.consecutive_failures >= self.fail_limit and not self.stats.out_of_service:
                self.stats.out_of_service = True
                self.stats.reason = f"{self.stats.consecutive_failures} cards in a row failed"
