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
                HSM session: the read-back steps with their expected answers, and the
                card's life cycle (PERSONALIZED)
``magstripe``   encode each track, read it back, compare
``visual``      embossing, laser engraving and the photo, rendered to an image
``qc``          QC's cross-check: what the stripe holds and what the card body shows
                against the database (the prepared card), and the PAN across the two
==============  ===================================================================

The first four run inside a chip-encoding module (:mod:`.modules`); the last three
are single stations downstream. Each returns a :class:`StationResult`: the station,
pass or fail, the modeled seconds (:mod:`.timing`), a few figures, and on failure
a reason that names the step, never its data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import PreparedCard, Step, StepKind
from cardperso.line.magstripe import SimulatedStripe, StripeFault, encode_and_verify
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

    @property
    def failed(self) -> StationResult | None:
        return next((r for r in self.results if not r.ok), None)


def chip_check_steps(script: tuple[Step, ...]) -> tuple[Step, ...]:
    """The command/response check: the script's authentications, selections and the
    steps whose answer is known in advance, then the card's life cycle."""
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


def init_steps(script: InitScript, card: PreparedCard) -> tuple[Step, ...]:
    return script.steps(card.init_steps)


class MagstripeStation:
    """Encode and read back the tracks (nothing to do for a card without a stripe)."""

    name = "magstripe"

    def __init__(self, timing: LineTiming, fault: StripeFault | None = None) -> None:
        self.timing = timing
        self.fault = fault

    def process(self, card: CardInLine) -> StationResult:
        tracks = card.prepared.tracks
        t = self.timing.magstripe(len(tracks))
        if not tracks:
            return StationResult(self.name, True, t, {"tracks": 0})
        check = encode_and_verify(card.stripe, tracks, serial=card.serial, fault=self.fault)
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
    ) -> None:
        self.timing = timing
        self.px_per_mm = px_per_mm
        self.faces_dir = faces_dir
        self.keep_faces = keep_faces
        self.kept: list[Path] = []
        self.fault = fault

    def process(self, card: CardInLine) -> StationResult:
        body = card.prepared.card_body
        face = render_face(body, self.px_per_mm)
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
    """Cross-check the card against the database: stripe, card body, PAN across both.

    The chip was already checked in its module (``chip_check``); this station sees
    the finished card as the QC camera and the stripe reader do."""

    name = "qc"

    def __init__(self, timing: LineTiming) -> None:
        self.timing = timing

    def process(self, card: CardInLine) -> StationResult:
        t = self.timing.qc()
        body = card.prepared.card_body
        expected = tuple(text for _, _, text in body.emboss) + tuple(
            text for side, _, _, _, text in body.laser if side == "front"
        )
        if card.face is None or card.face.texts != expected:
            return StationResult(self.name, False, t, reason="card body differs from the database")
        if card.prepared.tracks and card.stripe_pan is None:
            return StationResult(self.name, False, t, reason="no PAN read from the stripe")
        number = next((text for area, _, text in body.emboss if area == "number"), None)
        if (
            card.stripe_pan is not None
            and number is not None
            and _digits(number) != card.stripe_pan
        ):
            return StationResult(
                self.name, False, t, reason="PAN on the stripe differs from the embossed PAN"
            )
        return StationResult(self.name, True, t, {"checks": len(expected) + 1})
