"""The initialization room: blank stock in, pre-initialized stock out.

The chapter keeps initialization and personalization apart (its Figure 10.63): the
first room loads the operating-system-level structure and the card key KD into
blank cards, with no access to any cardholder's data; the second personalizes
those cards - possibly weeks later, possibly one at a time for a just-in-time
replacement - and never sees KD. :func:`initialize_stock` is the first room:

* only an operator with the ``init_operator`` role may run it
  (:data:`~cardperso.production.operators.Action.INITIALIZE_STOCK`; that role may
  start no batch, and the line's operators may not initialize stock);
* its one HSM session has the ``initialization`` role, which may obtain KD for a
  card (``kd_for_initialization``) and may not decrypt issuer data; the room opens
  no other session and reads no batch;
* each blank card is claimed, initialized (logically, or by memory image, as the
  profile's ``loading.method`` says or the caller overrides), and booked as
  pre-initialized stock of the profile's product and version
  (:mod:`cardperso.production.stock`), or spoiled with its reason - every step in
  the audit log. A card that fails is retried once (power cycle, then from the
  failed step; an image write starts again from its checks);
* the image comes from the card vendor's offline builder (``image_source="vendor"``,
  the default) or from a golden card (``"golden"``): the first blank card is made
  golden, read out once, then terminated (its lock fuse blown, so it can never be
  read out again) and spoiled as "golden card";
* an initialized card goes to the shelf (the secure store): for simulated cards,
  :meth:`cardperso.line.feeder.SimulatedFeeder.shelve` keeps its memory in the
  card vault (:mod:`cardperso.line.vault`) so a later ``batch run`` on
  pre-initialized stock finds the very card.

A killed run leaves at most the card it was working on claimed; the next run of
the same station spoils it first (:func:`cardperso.production.stock.recover_init_claims`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cardperso.crypto.rand import RandomSource, SeededRandom, SystemRandom
from cardperso.dataprep.init_script import InitScript, build_init_script
from cardperso.errors import CardpersoError, ReaderError
from cardperso.hsm import Hsm, Role
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner, read_serial
from cardperso.line.feeder import Feeder, Shelf
from cardperso.line.imageinit import ImageInitError, ImagePlan, ImageRefused, write_image
from cardperso.production import audit, repo, stock
from cardperso.production.db import Database
from cardperso.production.operators import Action, Principal, authorize
from cardperso.profiles.loader import dump_profile
from cardperso.profiles.schema import LoadingMethod, Profile
from cardperso.readers import Reader

__all__ = ["ImageSource", "InitRoomConfig", "InitRoomResult", "initialize_one", "initialize_stock"]

ImageSource = Literal["vendor", "golden"]
STATION = "init"


@dataclass
class InitRoomConfig:
    """How the initialization room runs."""

    station: str = "R1"
    """The initialization station (its claims are ``init:<station>``)."""
    method: LoadingMethod | None = None
    """Logical or image; None: the profile's ``loading.method``."""
    image_source: ImageSource = "vendor"
    """Where the image comes from in image mode: the vendor's builder or a golden card."""
    seed: str | None = None
    """Seed for the host's random numbers (repeatable runs); None: the system RNG."""
    fail_limit: int = 3
    """Stop after this many cards in a row have failed (a broken contact unit)."""


@dataclass
class InitRoomResult:
    """What one run of the initialization room did (no key, no card memory)."""

    product: str
    version: int
    method: str
    image_source: str | None = None
    image_sha256: str | None = None
    golden: str | None = None
    initialized: list[str] = field(default_factory=list)
    spoiled: dict[str, str] = field(default_factory=dict)
    recovered: int = 0
    chip_s: list[float] = field(default_factory=list)
    """Modeled seconds per initialized card (ATR and PPS included)."""
    stopped: str | None = None

    @property
    def mean_chip_s(self) -> float:
        return sum(self.chip_s) / len(self.chip_s) if self.chip_s else 0.0

    def audit_detail(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "version": self.version,
            "method": self.method,
            "image_source": self.image_source,
            "image_sha256": self.image_sha256,
            "golden": self.golden,
            "initialized": len(self.initialized),
            "spoiled": len(self.spoiled),
            "recovered": self.recovered,
            "mean_chip_s": round(self.mean_chip_s, 4),
            "stopped": self.stopped,
        }


def initialize_one(
    reader: Reader,
    serial: bytes,
    keys: KeyCache,
    script: InitScript,
    rng: RandomSource,
    *,
    image: ImagePlan | None = None,
) -> dict[str, Any]:
    """Initialize the blank card in ``reader`` (powered, serial checked) with one
    retry; a small detail dict, or :class:`ChipFailure` naming the step."""
    retried = False
    detail: dict[str, Any] = {"method": "image" if image is not None else "logical"}
    if image is not None:
        for attempt in (1, 2):
            try:
                done = write_image(reader, image.image, serial=serial)
            except ImageRefused as e:
                raise ChipFailure(STATION, f"image refused: {e}") from None
            except ImageInitError as e:
                if attempt == 2:
                    raise ChipFailure(STATION, f"image: {e}") from None
                retried = True
                try:
                    reader.close()
                    reader.reset()
                except ReaderError as r:
                    raise ChipFailure(STATION, f"reset for the retry: {r}") from None
                continue
            detail.update(pieces=done.pieces, rewrites=done.rewrites)
            break
    steps = image.steps_after() if image is not None else script.steps()
    runner = StepRunner(STATION, reader, keys, serial, rng)
    try:
        runner.run(steps)
    except ChipFailure as first:
        if retried:
            raise
        runner.resume(steps, max(first.index, 0))
        retried = True
    detail.update(steps=len(steps), hsm=runner.hsm_calls, retried=retried)
    return detail


def _feed(reader: Reader, serial_hex: str) -> bytes:
    try:
        reader.reset()
        serial = read_serial(reader)
    except ReaderError as e:
        raise ChipFailure("feeder", f"card does not answer: {e}") from None
    if serial.hex().upper() != serial_hex:
        raise ChipFailure("feeder", "the chip serial differs from the stock record")
    return serial


def initialize_stock(
    db: Database,
    hsm: Hsm,
    profile: Profile,
    count: int,
    *,
    by: Principal,
    feeder: Feeder,
    shelf: Shelf | None = None,
    config: InitRoomConfig | None = None,
    progress: Callable[[InitRoomResult], None] | None = None,
) -> InitRoomResult:
    """Initialize up to ``count`` blank stock cards as pre-initialized ``profile`` stock."""
    cfg = config or InitRoomConfig()
    if count < 1:
        raise CardpersoError("initialize at least one card")
    method = cfg.method or profile.loading.method
    result = InitRoomResult(profile.id, profile.version, method.value)
    sid = stock.init_station_id(cfg.station)
    obj = f"product:{profile.id}"
    with db.transaction() as s:
        authorize(s, by, Action.INITIALIZE_STOCK, obj, db.now())
        repo.register_profile(s, profile.id, profile.version, dump_profile(profile), when=db.now())
        result.recovered = stock.recover_init_claims(s, by=by, station=cfg.station, when=db.now())
    script = build_init_script(profile)
    rng: RandomSource = (
        SeededRandom(f"{cfg.seed}/{sid}") if cfg.seed is not None else SystemRandom()
    )
    try:
        with hsm.session(Role.INITIALIZATION, f"{sid}/{by.name}") as session:
            keys = KeyCache(session)
            image: ImagePlan | None = None
            if method is LoadingMethod.IMAGE:
                image = _image(db, by, cfg, feeder, script, result)
                if image is None:
                    return result
                result.image_source = image.source
                result.image_sha256 = image.image.sha256.hex()
            failures = 0
            while len(result.initialized) < count:
                with db.transaction() as s:
                    row = stock.claim_blank_for_init(s, by=by, station=cfg.station, when=db.now())
                    claimed = None if row is None else (row.id, row.serial)
                if claimed is None:
                    result.stopped = "no blank stock card available"
                    break
                reason = _card(
                    db, by, cfg, feeder, shelf, keys, script, image, rng, result, claimed
                )
                if reason is None:
                    failures = 0
                else:
                    failures += 1
                    result.spoiled[claimed[1]] = reason
                    if failures >= cfg.fail_limit:
                        result.stopped = f"{failures} cards in a row failed"
                        break
                if progress is not None:
                    progress(result)
    finally:
        with db.transaction() as s:
            audit.append(
                s,
                actor=by.name,
                action="initialize_stock",
                obj=obj,
                result="done" if result.stopped is None else "stopped",
                when=db.now(),
                detail=result.audit_detail(),
            )
    return result


def _card(
    db: Database,
    by: Principal,
    cfg: InitRoomConfig,
    feeder: Feeder,
    shelf: Shelf | None,
    keys: KeyCache,
    script: InitScript,
    image: ImagePlan | None,
    rng: RandomSource,
    result: InitRoomResult,
    claimed: tuple[int, str],
) -> str | None:
    """Initialize and book one claimed card; the reason it was spoiled, or None."""
    card_id, serial_hex = claimed
    reader: Reader | None = None
    failure: str | None = None
    detail: dict[str, Any] = {}
    try:
        try:
            reader = feeder.insert(serial_hex, stock.init_station_id(cfg.station))
        except ReaderError as e:
            raise ChipFailure("feeder", f"card not fed: {e}") from None
        serial = _feed(reader, serial_hex)
        detail = initialize_one(reader, serial, keys, script, rng, image=image)
        result.chip_s.append(reader.elapsed)
    except ChipFailure as e:
        failure = f"{e.station}: {e.reason}"
    finally:
        if reader is not None:
            with contextlib.suppress(ReaderError):
                reader.close()
    if failure is None and shelf is not None:
        try:
            shelf.shelve(serial_hex)
        except (ReaderError, OSError) as e:
            failure = f"shelf: {e}"[:200]
    with db.transaction() as s:
        if failure is None:
            stock.book_initialized(
                s,
                card_id,
                by=by,
                station=cfg.station,
                product=result.product,
                profile_version=result.version,
                when=db.now(),
                detail=detail,
            )
        else:
            stock.spoil_in_init(
                s, card_id, by=by, station=cfg.station, reason=failure, when=db.now()
            )
    if failure is None:
        result.initialized.append(serial_hex)
    return failure


def _image(
    db: Database,
    by: Principal,
    cfg: InitRoomConfig,
    feeder: Feeder,
    script: InitScript,
    result: InitRoomResult,
) -> ImagePlan | None:
    """The run's image: built offline, or read out of a golden card made from the
    first blank card (which is then terminated and spoiled). None if no card is left."""
    if cfg.image_source == "vendor":
        return ImagePlan.offline(script)
    with db.transaction() as s:
        row = stock.claim_blank_for_init(s, by=by, station=cfg.station, when=db.now())
        claimed = None if row is None else (row.id, row.serial)
    if claimed is None:
        result.stopped = "no blank stock card available for the golden card"
        return None
    card_id, serial_hex = claimed
    reason = "golden card: read out once, then terminated"
    reader: Reader | None = None
    plan: ImagePlan | None = None
    error: ImageInitError | None = None
    try:
        reader = feeder.insert(serial_hex, stock.init_station_id(cfg.station))
        plan = ImagePlan.golden(reader, script, retire=True)
    except (ImageInitError, ReaderError) as e:
        error = e if isinstance(e, ImageInitError) else ImageInitError(str(e))
        reason = f"golden card failed: {e}"[:200]
    finally:
        if reader is not None:
            with contextlib.suppress(ReaderError):
                reader.close()
        with db.transaction() as s:
            stock.spoil_in_init(
                s, card_id, by=by, station=cfg.station, reason=reason, when=db.now()
            )
    if error is not None:
        raise error
    result.golden = serial_hex
    return plan
