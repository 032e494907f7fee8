"""The lettershop's settings: presort, page layout, inserter and scale, postage, days.

One pydantic model (:class:`LettershopConfig`), every part with a default a bureau can
run with, loadable from YAML (:func:`load_config`; unknown keys are errors). Lengths are
millimetres from the top-left corner of the page, weights grams, prices minor units
(cents).

The checks that span several settings run when the model is built, so no unsafe
configuration exists:

* **the card on its carrier** lies on the page, clear of the address window and the
  machine-readable code, and never across a fold line - a card folded over is a card
  whose chip breaks (the chapter's post-room story; the profile's ``card_offset_mm``
  is checked against the same rule when a batch is run, :meth:`CarrierLayout.check_card`);
* **the scale tolerance** catches every missing or doubled card and never diverts a
  good piece: it must exceed the worst sum of the spreads of what is in an envelope
  (paper, envelope, card, the scale's own rounding), and stay below one card's weight
  less that worst sum;
* **the PIN mailer is posted later than its card**: ``mailer_delay_days`` is at least
  one day, and posting-day shifts only move a mailer later.

Default weights and why (each can be set):

==================  ======  =========================================================
what                grams   reasoning
==================  ======  =========================================================
A4 sheet            4.99    80 g/m² x 0.210 m x 0.297 m
C5 envelope         6.70    80 g/m², two faces 162 x 229 mm plus the flap (0.084 m²)
PIN mailer envelope 5.60    DL security envelope: 80 g/m², two faces 110 x 220 mm
                            plus the flap (0.055 m², 4.4 g) and its carbon coating
card                6.00    "the weight of the card, which is around 6 grams" (chapter)
card adhesive       0.10    one removable glue dot
==================  ======  =========================================================

Spreads (uniform, either side of the nominal): paper ±3 % (±0.15 g a sheet),
envelopes ±0.2 g, a card ±0.25 g, the scale rounds to 0.1 g. Default postage: the
Deutsche Post letter classes of 2025 (Standardbrief up to 20 g, 95 ct; Kompaktbrief
up to 50 g, 110 ct; Grossbrief up to 500 g, 180 ct) - set your operator's table.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardperso.errors import ConfigError

__all__ = [
    "CARD_HEIGHT_MM",
    "CARD_WIDTH_MM",
    "PAGE_HEIGHT_MM",
    "PAGE_WIDTH_MM",
    "CarrierLayout",
    "Fold",
    "LettershopConfig",
    "MailerLayout",
    "PostageClass",
    "PresortConfig",
    "Rect",
    "TestLetters",
    "Weights",
    "dump_config",
    "load_config",
]

PAGE_WIDTH_MM = 210.0
PAGE_HEIGHT_MM = 297.0
"""ISO 216 A4: carriers and PIN mailers are A4 sheets."""
CARD_WIDTH_MM = 85.60
CARD_HEIGHT_MM = 53.98
"""ISO/IEC 7810 ID-1."""

Fold = Literal["none", "half", "letter"]
"""How the sheet is folded for its envelope: not at all (C4), once at half height (C5),
or in three panels (DL, the letter fold)."""

_FOLD_LINES: dict[str, tuple[float, ...]] = {
    "none": (),
    "half": (PAGE_HEIGHT_MM / 2,),
    "letter": (PAGE_HEIGHT_MM / 3, 2 * PAGE_HEIGHT_MM / 3),
}
FOLD_CLEARANCE_MM = 3.0
"""How far a card must stay from a fold line (the crease is not a sharp line)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


Mm = Annotated[float, Field(ge=0, le=PAGE_HEIGHT_MM)]
Grams = Annotated[float, Field(ge=0, le=1000)]


class Rect(_Model):
    """A rectangle on the page, from its top-left corner."""

    x_mm: Mm
    y_mm: Mm
    w_mm: Annotated[float, Field(gt=0, le=PAGE_WIDTH_MM)]
    h_mm: Annotated[float, Field(gt=0, le=PAGE_HEIGHT_MM)]

    @property
    def bottom_mm(self) -> float:
        return self.y_mm + self.h_mm

    @property
    def right_mm(self) -> float:
        return self.x_mm + self.w_mm

    def on_page(self) -> bool:
        return self.right_mm <= PAGE_WIDTH_MM and self.bottom_mm <= PAGE_HEIGHT_MM

    def overlaps(self, other: Rect) -> bool:
        return not (
            self.right_mm <= other.x_mm
            or other.right_mm <= self.x_mm
            or self.bottom_mm <= other.y_mm
            or other.bottom_mm <= self.y_mm
        )

    def crosses_fold(self, fold: Fold) -> float | None:
        """The first fold line (mm from the top) within the clearance of this area."""
        for line in _FOLD_LINES[fold]:
            if self.y_mm - FOLD_CLEARANCE_MM < line < self.bottom_mm + FOLD_CLEARANCE_MM:
                return line
        return None


ADDRESS_WINDOW = Rect(x_mm=20, y_mm=27, w_mm=85, h_mm=40)
"""DIN 5008 form A: the address field a window envelope shows."""


class CarrierLayout(_Model):
    """The card carrier sheet."""

    fold: Fold = "half"
    """Folded once for a C5 envelope."""
    card_x_mm: Mm | None = None
    """Left edge of the card; default: centred on the sheet."""
    card_y_mm: Mm | None = None
    """Top edge of the card; default: the profile's ``letters.carrier.card_offset_mm``."""
    address: Rect = ADDRESS_WINDOW
    """The address field behind the envelope window."""
    code: Rect = Rect(x_mm=20, y_mm=268, w_mm=110, h_mm=16)
    """The machine-readable code (Code 128) the inserter reads, with its text line."""
    code_bar_mm: Annotated[float, Field(ge=0.19, le=1.0)] = 0.25
    """Narrowest bar (Code 128 module); 0.25 mm reads on any inserter scanner."""

    def card_rect(self, offset_mm: float) -> Rect:
        x = self.card_x_mm if self.card_x_mm is not None else (PAGE_WIDTH_MM - CARD_WIDTH_MM) / 2
        y = self.card_y_mm if self.card_y_mm is not None else offset_mm
        return Rect(x_mm=x, y_mm=y, w_mm=CARD_WIDTH_MM, h_mm=CARD_HEIGHT_MM)

    def check_card(self, offset_mm: float) -> str | None:
        """Why the card cannot sit at this offset (None: it can)."""
        card = self.card_rect(offset_mm)
        if not card.on_page():
            return f"the card at {card.x_mm:g}/{card.y_mm:g} mm runs off the sheet"
        line = card.crosses_fold(self.fold)
        if line is not None:
            return (
                f"the card at {card.y_mm:g} to {card.bottom_mm:g} mm from the top would be "
                f"bent by the fold at {line:g} mm"
            )
        if card.overlaps(self.address):
            return "the card would cover the address field"
        if card.overlaps(self.code):
            return "the card would cover the machine-readable code"
        return None

    @model_validator(mode="after")
    def _placed(self) -> CarrierLayout:
        for name, r in (("address", self.address), ("code", self.code)):
            if not r.on_page():
                raise ValueError(f"carrier {name} area runs off the sheet")
        if self.card_y_mm is not None:
            problem = self.check_card(self.card_y_mm)
            if problem:
                raise ValueError(problem)
        return self


class MailerLayout(_Model):
    """The PIN mailer sheet."""

    fold: Fold = "letter"
    """Folded in three for a DL security envelope."""
    address: Rect = ADDRESS_WINDOW
    """The address field behind the envelope window."""
    blind: Rect = Rect(x_mm=20, y_mm=112, w_mm=170, h_mm=56)
    """The inner blind-print area: the only place a PIN is printed."""
    code: Rect = Rect(x_mm=20, y_mm=268, w_mm=110, h_mm=16)
    """The envelope's tracking code (Code 128 of the envelope id, never card data)."""

    @model_validator(mode="after")
    def _placed(self) -> MailerLayout:
        for name, r in (("address", self.address), ("blind", self.blind), ("code", self.code)):
            if not r.on_page():
                raise ValueError(f"mailer {name} area runs off the sheet")
        if self.blind.overlaps(self.address) or self.blind.overlaps(self.code):
            raise ValueError("the blind-print area must not share the sheet's outer areas")
        line = self.blind.crosses_fold(self.fold)
        if line is not None:
            raise ValueError(f"the blind-print area crosses the fold at {line:g} mm")
        return self


class Weights(_Model):
    """What the scale expects and how much real pieces vary (see the module notes)."""

    sheet_g: Grams = 4.99
    sheet_spread_g: Grams = 0.15
    carrier_envelope_g: Grams = 6.70
    mailer_envelope_g: Grams = 5.60
    envelope_spread_g: Grams = 0.20
    card_g: Grams = 6.00
    card_spread_g: Grams = 0.25
    adhesive_g: Grams = 0.10
    scale_resolution_g: Annotated[float, Field(gt=0, le=1)] = 0.1
    tolerance_g: Annotated[float, Field(gt=0, le=100)] = 2.0
    """A piece more than this off its expected weight is diverted."""

    def worst_noise_g(self, sheets: int = 1, cards: int = 1) -> float:
        """The largest deviation a correct piece can show on the scale."""
        return (
            sheets * self.sheet_spread_g
            + self.envelope_spread_g
            + cards * self.card_spread_g
            + self.scale_resolution_g / 2
        )

    @model_validator(mode="after")
    def _decisive(self) -> Weights:
        noise = self.worst_noise_g()
        if self.tolerance_g <= noise:
            raise ValueError(
                f"tolerance {self.tolerance_g:g} g does not exceed the spread of a correct "
                f"piece ({noise:.2f} g): good pieces would be diverted"
            )
        # a missing card is card_g light, a second card card_g heavy, each +- its spread
        if self.tolerance_g >= self.card_g - noise - self.card_spread_g:
            raise ValueError(
                f"tolerance {self.tolerance_g:g} g is too close to one card "
                f"({self.card_g:g} g): a missing or a second card could pass"
            )
        return self


class PostageClass(_Model):
    """One postage class: pieces up to ``max_g`` pay ``price``."""

    name: Annotated[str, Field(min_length=1, max_length=32)]
    max_g: Annotated[float, Field(gt=0)]
    price: Annotated[int, Field(ge=0)]
    """Minor units (cents)."""


DEFAULT_POSTAGE = (
    PostageClass(name="standard", max_g=20, price=95),
    PostageClass(name="compact", max_g=50, price=110),
    PostageClass(name="large", max_g=500, price=180),
)


class PresortConfig(_Model):
    """Postal order: country, then regional code, then local code."""

    region_lengths: dict[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], int] = {}
    """Per country, re-split the postal code: the first n characters are the regional
    code (default: the country's rule in ``cardperso.dataprep.fields``)."""
    country_order: tuple[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], ...] = ()
    """Countries handed over first, in this order; the rest follow alphabetically."""
    bundle_size: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Pieces per bundle; a bundle also ends where the regional code changes."""
    tray_size: Annotated[int, Field(ge=1, le=100_000)] = 400
    """Pieces per tray; a tray holds whole bundles of one region."""


class TestLetters(_Model):
    """A small run of test letters posted to one region before the mailing."""

    count: Annotated[int, Field(ge=0, le=10_000)] = 0
    """How many (0: none)."""
    region: Annotated[str, Field(pattern=r"^[A-Z]{2}:[A-Z0-9]{1,10}$")] | None = None
    """Target ``COUNTRY:REGION``; default: the region receiving the most cards."""
    days_before: Annotated[int, Field(ge=1, le=60)] = 5
    """Posting days between the test letters and the first carriers."""
    recipients: tuple[tuple[str, ...], ...] = ()
    """Address blocks of the bureau's test panel in that region (used in turn); default:
    numbered panel addresses naming the region."""


class LettershopConfig(_Model):
    """Everything the lettershop run can be told."""

    presort: PresortConfig = PresortConfig()
    carrier: CarrierLayout = CarrierLayout()
    mailer: MailerLayout = MailerLayout()
    weights: Weights = Weights()
    postage: tuple[PostageClass, ...] = DEFAULT_POSTAGE
    """Postage classes by weight; a piece takes the first class it fits."""
    first_day: date | None = None
    """Posting day of the first carriers; default: the run's date (moved to a posting day)."""
    daily_capacity: Annotated[int, Field(ge=1)] | None = None
    """Carriers an inserter posts in one day (whole trays); default: all on one day."""
    posting_weekdays: tuple[Annotated[int, Field(ge=0, le=6)], ...] = (0, 1, 2, 3, 4)
    """Days the post office takes mail (Monday = 0)."""
    mailer_delay_days: Annotated[int, Field(ge=1, le=60)] | None = None
    """Days between a card and its PIN mailer; default: the profile's
    ``letters.pin_mailer.delay_days``. Never less than one: a card and its PIN never
    travel on the same day."""
    test_letters: TestLetters = TestLetters()
    seed: Annotated[str, Field(max_length=64)] = "lettershop"
    """Seed of the simulated paper, envelopes, cards and scale (repeatable runs)."""
    font_file: Path | None = None
    """A TrueType font for names outside Windows-1252, tried before reportlab's Vera
    Sans and the system's DejaVu Sans (Helvetica covers Western European names)."""

    @model_validator(mode="after")
    def _consistent(self) -> LettershopConfig:
        if not self.posting_weekdays:
            raise ValueError("posting_weekdays must name at least one day")
        if not self.postage:
            raise ValueError("postage needs at least one class")
        limits = [c.max_g for c in self.postage]
        if limits != sorted(limits) or len(set(limits)) != len(limits):
            raise ValueError("postage classes must be listed by rising max_g")
        if self.daily_capacity is not None and self.daily_capacity < self.presort.tray_size:
            raise ValueError("daily_capacity must hold at least one full tray")
        return self


def _message(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top)"
    return f"{where}: {first['msg']}"


def load_config(path: Path | None) -> LettershopConfig:
    """The settings in a YAML file (None: the defaults); a bad file is a ConfigError."""
    if path is None:
        return LettershopConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the lettershop settings ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the lettershop settings must be a mapping")
    try:
        return LettershopConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_message(e)}") from None


def dump_config(config: LettershopConfig) -> str:
    """The settings as YAML (every key, defaults included)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
