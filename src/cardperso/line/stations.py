"""The stations a card passes, in order, and what each one records.

==============  ===================================================================
station         what it does
==============  ===================================================================
``feeder``      puts the stock card into a module's slot, powers it (ATR, PPS) and
                checks the serial the chip reports against the stock record
``init``        logical initialization: the profile's structure, the record's
                ``init_steps``, KD from the HSM (initialization role), SET LIFECYCLE
``perso``       electrical personalization: the KD-keyed secure-messaging channel
                opened through the HSM (personalization role), every step's SW checked
``chip_check``  QC's command/response check after a power cycle, through a QC-role
                HSM session: the script's authentications and selections, every
                step whose answer data prepared in advance (the read-backs), and
                the card's life cycle (PERSONALIZED); any difference rejects
``magstripe``   encode each track, read it back: signal (parity, sentinels, LRC),
                ISO/IEC 7813 format, content against the database
                (:mod:`.magstripe`)
``visual``      embossing, laser engraving and the photo, rendered to an image
``qc``          the finished card against the database (:mod:`.qc`): the HSM
                check (keys proved by authentication verified in the HSM, PIN
                objects' state, the chip's PAN read back), the camera (OCR and OCV
                of the text, the photo) and the PAN across stripe, body and chip
==============  ===================================================================

The first four run inside a chip-encoding module (:mod:`.modules`); the last three
are single stations downstream. Each returns a :class:`StationResult`: the station,
pass or fail, the modeled seconds (:mod:`.timing`), a few figures, and on failure
a reason that names the step, never its data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import PreparedCard, Step, StepKind
from cardperso.errors import ReaderError
from cardperso.line.chip import read_serial
from cardperso.line.feeder import CpuMeter
from cardperso.line.magstripe import SimulatedStripe, StripeFault, encode_and_verify
from cardperso.line.qc.chipproof import ProofResult, database_pan
from cardperso.line.qc.config import QcConfig
from cardperso.line.qc.ocr import find_tessdata
from cardperso.line.qc.vision import VisionCheck, VisionResult
from cardperso.line.timing import LineTiming
from cardperso.line.visual import FaceRender, render_face
from cardperso.readers import Reader, cos

__all__ = [
    "CardInLine",
    "MagstripeStation",
    "QcStation",
    "StationResult",
    "VisualFault",
    "VisualStation",
    "chip_check_steps",
    "unverified_writes",
]

LIFECYCLE_CHECK = Step(
    StepKind.APDU,
    "GET DATA DF02 (life cycle PERSONALIZED)",
    apdu=cos.get_data(0xDF02),
    expect_data=bytes([0xDF, 0x02, 0x01, cos.PERSONALIZED]),
)


@dataclass(frozen=True, slots=True)
class StationResult:
    """One station's verdict on one card."""

    station: str
    ok: bool
    modeled_s: float
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def as_detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "t": round(self.modeled_s, 5), **self.detail}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class CardInLine:
    """A physical card travelling the line with its job's prepared data."""

    attempt_id: int
    job_id: int
    attempt_no: int
    record_ref: str
    serial: str
    module_id: str
    prepared: PreparedCard
    results: list[StationResult] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Modeled seconds per pipeline stage (:data:`cardperso.line.timing.STATIONS`)."""
    collected: dict[str, bytes] = field(default_factory=dict)
    stripe: SimulatedStripe = field(default_factory=SimulatedStripe)
    stripe_pan: str | None = None
    face: FaceRender | None = None
    reader: Reader | None = None
    retried: bool = False
    proof: ProofResult | None = None
    """The HSM check, when the chip module ran it after its chip check (QC's verdict
    on the keys, PIN objects and chip PAN; the QC station confirms the chip is this
    card's and decides)."""

    @property
    def failed(self) -> StationResult | None:
        return next((r for r in self.results if not r.ok), None)


def chip_check_steps(script: tuple[Step, ...]) -> tuple[Step, ...]:
    """The command/response check: the script's authentications, selections and the
    steps whose answer is known in advance, then the card's life cycle.

    Every step keeps its expected status word and data: the runner rejects the card
    on any difference (:class:`~cardperso.line.chip.StepRunner`). What the script
    writes but cannot read back is listed by :func:`unverified_writes`."""
    keep = tuple(
        s
        for s in script
        if s.kind in (StepKind.OPEN_SM, StepKind.EXTERNAL_AUTH)
        or (
            s.kind is StepKind.APDU
            and (s.expect_data is not None or (len(s.apdu) > 1 and s.apdu[1] == 0xA4))
        )
    )
    return (*keep, LIFECYCLE_CHECK)


_WRITES = frozenset({0xD6, 0xDC, 0xE2})  # UPDATE BINARY, UPDATE RECORD, APPEND RECORD
_READS = frozenset({0xB0, 0xB2})  # READ BINARY, READ RECORD


def unverified_writes(card: PreparedCard) -> list[str]:
    """Files the card's record data is written to (initialization or personalization)
    that no step reads back with an expected answer: the gaps of the
    command/response check, by the SELECT step's note (e.g. ``SELECT EF.IMSI``)."""
    written: dict[bytes, str] = {}
    verified: set[bytes] = set()
    current: tuple[bytes, str] | None = None
    for step in (*card.init_steps, *card.script):
        if step.kind is not StepKind.APDU or len(step.apdu) < 2:
            continue
        ins = step.apdu[1]
        if ins == 0xA4:
            current = (step.apdu, step.note)
        elif current is not None and ins in _WRITES:
            written.setdefault(current[0], current[1])
        elif current is not None and ins in _READS and step.expect_data is not None:
            verified.add(current[0])
    return [note for key, note in written.items() if key not in verified]


def init_steps(script: InitScript, card: PreparedCard) -> tuple[Step, ...]:
    return script.steps(card.init_steps)


class MagstripeStation:
    """Encode and read back the tracks (nothing to do for a card without a stripe)."""

    name = "magstripe"

    def __init__(
        self, timing: LineTiming, fault: StripeFault | None = None, meter: CpuMeter | None = None
    ) -> None:
        self.timing = timing
        self.fault = fault
        self.meter = meter
        """Counts the CPU of the simulated encoder head (writing and reading the stripe)."""

    def process(self, card: CardInLine) -> StationResult:
        tracks = card.prepared.tracks
        t = self.timing.magstripe(len(tracks))
        if not tracks:
            return StationResult(self.name, True, t, {"tracks": 0})
        t0 = time.thread_time()
        check = encode_and_verify(card.stripe, tracks, serial=card.serial, fault=self.fault)
        if self.meter is not None:
            self.meter.add(time.thread_time() - t0)
        card.stripe_pan = check.pan
        return StationResult(self.name, check.ok, t, {"tracks": len(tracks)}, check.reason)


VisualFault = Callable[[str, FaceRender], FaceRender]
"""(chip serial, what was rendered) -> what the card body really shows (tests)."""


class VisualStation:
    """Emboss, engrave and print the photo: the face rendered, kept as PNG if asked."""

    name = "visual"

    def __init__(
        self,
        timing: LineTiming,
        *,
        px_per_mm: float = 8.0,
        faces_dir: Path | None = None,
        keep_faces: int = 0,
        fault: VisualFault | None = None,
        meter: CpuMeter | None = None,
    ) -> None:
        self.timing = timing
        self.meter = meter
        """Counts the CPU of the simulated embosser, laser and printer (the face's raster)."""
        self.px_per_mm = px_per_mm
        self.faces_dir = faces_dir
        self.keep_faces = keep_faces
        self.kept: list[Path] = []
        self.fault = fault

    def process(self, card: CardInLine) -> StationResult:
        body = card.prepared.card_body
        t0 = time.thread_time()
        face = render_face(body, self.px_per_mm)
        if self.meter is not None:
            self.meter.add(time.thread_time() - t0)
        if self.fault is not None:
            face = self.fault(card.serial, face)
        card.face = face
        photo = body.photo
        t = self.timing.visual(
            [text for _, _, text in body.emboss],
            [(h, text) for _, _, _, h, text in body.laser],
            (float(photo["width_mm"]), float(photo["height_mm"])) if photo else None,
        )
        detail: dict[str, Any] = {"emboss": len(body.emboss), "laser": len(body.laser)}
        if self.faces_dir is not None and len(self.kept) < self.keep_faces:
            self.faces_dir.mkdir(parents=True, exist_ok=True)
            safe = card.record_ref.replace("/", "_")
            path = self.faces_dir / f"{safe}-{card.serial}.png"
            path.write_bytes(face.png())
            self.kept.append(path)
            detail["png"] = path.name
        return StationResult(self.name, True, t, detail)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class QcStation:
    """The finished card against the database (see :mod:`.qc` and the module notes).

    In order: the HSM check (its verdict comes with the card: the chip module proved
    the card's keys through a QC-role HSM session right after its chip check, see
    :meth:`ChipProof.run_after_check`; here the chip is powered once more at QC's
    contact head and must be the card's), the camera check (:class:`VisionCheck`, on
    the cards :class:`QcConfig` says), then the cross-check of the PAN read from the
    stripe, shown on the body, read from the chip and held in the database. The
    first failing check rejects the card; its reason starts with the check's name
    (``hsm check``, ``vision``, ``crosscheck``). The result's detail carries each
    check's scores. :attr:`cpu_s` adds up the thread CPU each check took."""

    name = "qc"

    def __init__(
        self,
        timing: LineTiming,
        config: QcConfig | None = None,
        *,
        meter: CpuMeter | None = None,
    ) -> None:
        self.timing = timing
        self.meter = meter
        """Counts the CPU of the simulated camera system (OCV, OCR, photo correlation)."""
        self.config = config or QcConfig()
        if self.config.vision_every and self.config.ocr_every:
            find_tessdata(explicit=self.config.tessdata)  # no OCR engine: stop before the run
        self.vision = VisionCheck(self.config)
        self.cpu_s: dict[str, float] = {"hsm": 0.0, "vision": 0.0, "ocr": 0.0, "crosscheck": 0.0}
        self.counts: dict[str, int] = dict.fromkeys(self.cpu_s, 0)
        self._seen = 0

    def close(self) -> None:
        """End the OCR engine."""
        self.vision.close()

    def _spent(self, check: str, t0: float) -> None:
        self.cpu_s[check] += time.thread_time() - t0
        self.counts[check] += 1

    def process(self, card: CardInLine) -> StationResult:
        n = self._seen
        self._seen += 1
        t = self.timing.qc()
        detail: dict[str, Any] = {}

        def fail(reason: str) -> StationResult:
            return StationResult(self.name, False, t, detail, reason)

        chip: ProofResult | None = None
        if self.config.hsm_check:
            # Proved in the module's chip-check power-up; here the chip only has to be
            # this card's (a card swapped on the transport fails).
            if card.proof is None:
                return fail("hsm check: the card's keys were not proved at its chip check")
            t0 = time.thread_time()
            chip = card.proof
            seen_s = self._identify(card)
            self._spent("hsm", t0)
            t += 2 * self.timing.contact_s + seen_s
            detail["hsm"] = {**chip.as_detail(), "at": "chip_check"}
            if seen_s < 0:
                return fail("hsm check: the chip at QC is not the card's chip")
            if not chip.ok:
                return fail(chip.reason)
        seen: VisionResult | None = None
        if self.config.vision_due(n):
            if card.face is None:
                return fail("vision: no picture of the card body")
            ocr = self.config.ocr_due(n)
            t0 = time.thread_time()
            seen = self.vision.check(card.face, card.prepared.card_body, ocr=ocr)
            self._spent("ocr" if ocr else "vision", t0)
            if self.meter is not None:
                self.meter.add(time.thread_time() - t0)
            detail["vision"] = seen.as_detail()
            why = seen.reason(self.config)
            if why:
                return fail(why)
        if self.config.crosscheck:
            t0 = time.thread_time()
            why = self._crosscheck(card, chip, seen)
            self._spent("crosscheck", t0)
            if why:
                return fail(why)
        return StationResult(self.name, True, t, detail)

    @staticmethod
    def _identify(card: CardInLine) -> float:
        """Power the card at QC's contact head and read the serial its chip reports:
        the modeled seconds it took, or -1 if it is not the card's chip (or mute)."""
        reader = card.reader
        if reader is None:
            return -1.0
        t0 = reader.elapsed
        try:
            reader.reset()
            same = read_serial(reader).hex().upper() == card.serial
        except ReaderError:
            same = False
        finally:
            with contextlib.suppress(ReaderError):
                reader.close()
        return reader.elapsed - t0 if same else -1.0

    def _crosscheck(
        self, card: CardInLine, chip: ProofResult | None, seen: VisionResult | None
    ) -> str:
        """The PAN of every channel that has one against the database's; "" if they agree."""
        prepared = card.prepared
        if prepared.tracks and card.stripe_pan is None:
            return "crosscheck: no PAN read from the stripe"
        expected = database_pan(prepared)
        body = card.prepared.card_body
        number = next((i for i, (area, _, _) in enumerate(body.emboss) if area == "number"), None)
        body_pan: str | None = None
        if number is not None and seen is not None:
            read = seen.lines[number].read
            # the number line as OCR read it; else as OCV verified it against the database
            body_pan = _digits(read if read is not None else body.emboss[number][2])
        chip_pan = chip.chip_pan if chip is not None else None
        if chip is not None and chip.reads_pan and chip_pan is None:
            return "crosscheck: no PAN read from the chip"
        channels = (("stripe", card.stripe_pan), ("card body", body_pan), ("chip", chip_pan))
        reference = expected
        for where, pan in channels:
            if pan is None:
                continue
            if reference is None:
                reference = pan
            elif pan != reference:
                return f"crosscheck: the PAN on the {where} differs from the database"
        return ""
