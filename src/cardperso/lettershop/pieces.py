"""What the lettershop handles: the letters of one good card, and the mail pieces.

A :class:`Letter` is what the production database says about one good card: the
record's public names (batch, sequence, reference, masked PAN, chip serial), its
postal presort key, the carrier (name and address, card position) and the PIN mailer
(address and the PIN blocks under the print key - never a PIN). Its ``repr`` shows
only the public names: the address and the PAN needed by PAN-bound PIN block formats
stay out of logs and tracebacks.

A :class:`Piece` is one envelope: a card carrier, a PIN mailer or a test letter, with
where it goes (country, region, local code), when (posting day), where it sits in the
post (tray, bundle) and what the inserter and scale found. Pieces carry no name, no
address and no PIN: they are what the dispatch manifest lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

__all__ = [
    "CODE_PREFIX",
    "Letter",
    "MailerBlock",
    "Piece",
    "PieceKind",
    "PieceStatus",
    "carrier_code",
    "parse_carrier_code",
]

CODE_PREFIX = "CP1"
"""Version tag of the carrier's machine-readable code."""


class PieceKind(StrEnum):
    CARRIER = "carrier"
    PIN_MAILER = "pin_mailer"
    TEST_LETTER = "test_letter"


class PieceStatus(StrEnum):
    DISPATCHED = "dispatched"
    """Passed the inserter and the scale; handed to the post on its day."""
    DIVERTED = "diverted"
    """Taken off the inserter (wrong weight, card and carrier do not match)."""
    HELD = "held"
    """A PIN mailer whose card was diverted: it waits until its card is posted."""


@dataclass(frozen=True, slots=True)
class MailerBlock:
    """One PIN of a PIN mailer, as a PIN block under a print key (never the PIN)."""

    name: str
    key: str
    format: int
    block: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, repr=False)
class Letter:
    """The letters of one good card (see the module notes)."""

    batch_id: int
    seq: int
    record_ref: str
    pan_masked: str
    chip_serial: str
    presort: tuple[str, str, str]
    """(country, regional code, local code)."""
    card_offset_mm: float
    address: tuple[str, ...]
    greeting: str | None
    carrier_template: str
    mailer_address: tuple[str, ...] = ()
    mailer_template: str = ""
    mailer_delay_days: int | None = None
    pins: tuple[MailerBlock, ...] = ()
    pan: str | None = None
    """The clear PAN, only for PIN blocks of a PAN-bound format (never printed or written)."""

    def __repr__(self) -> str:
        return (
            f"Letter(record_ref={self.record_ref!r}, chip_serial={self.chip_serial!r}, "
            "<cardholder data redacted>)"
        )

    @property
    def last4(self) -> str:
        return self.pan_masked[-4:]


def carrier_code(batch_id: int, seq: int, chip_serial: str) -> str:
    """What the carrier's Code 128 says: batch, record and the card's chip serial - the
    inserter reads the chip of the card it attaches and compares (never the PAN)."""
    return f"{CODE_PREFIX}:{batch_id}:{seq}:{chip_serial}"


def parse_carrier_code(code: str) -> tuple[int, int, str] | None:
    """(batch id, sequence, chip serial) of a carrier code, or None if it is not one."""
    parts = code.split(":")
    if len(parts) != 4 or parts[0] != CODE_PREFIX:
        return None
    try:
        return int(parts[1]), int(parts[2]), parts[3]
    except ValueError:
        return None


@dataclass(slots=True)
class Piece:
    """One envelope (see the module notes)."""

    kind: PieceKind
    envelope: str
    """The envelope's id: unique in the run, printed as the mailer's tracking code."""
    record_ref: str
    seq: int
    country: str
    region: str
    local: str
    day: date
    chip_serial: str = ""
    pan_last4: str = ""
    code: str = ""
    """The machine-readable code printed on the sheet."""
    document: str = ""
    """The file (and for carriers the page) the sheet was printed in, relative to the run."""
    page: int = 0
    tray: int = 0
    bundle: int = 0
    position: int = 0
    """Place in the day's stream of this kind (1 = first)."""
    expected_g: float = 0.0
    weight_g: float = 0.0
    postage_class: str = ""
    price: int = 0
    status: PieceStatus = PieceStatus.DISPATCHED
    reason: str = ""
    card_envelope: str = ""
    """For a PIN mailer: the envelope that carries its card."""

    @property
    def region_key(self) -> tuple[str, str]:
        return self.country, self.region

    def as_row(self) -> dict[str, object]:
        """The manifest's view of the piece (no name, no address, no PIN)."""
        return {
            "envelope": self.envelope,
            "kind": self.kind.value,
            "day": self.day.isoformat(),
            "record_ref": self.record_ref,
            "seq": self.seq,
            "country": self.country,
            "region": self.region,
            "local": self.local,
            "tray": self.tray,
            "bundle": self.bundle,
            "position": self.position,
            "chip_serial": self.chip_serial,
            "pan_last4": self.pan_last4,
            "document": self.document,
            "page": self.page,
            "expected_g": round(self.expected_g, 2),
            "weight_g": round(self.weight_g, 2),
            "postage_class": self.postage_class,
            "price": self.price,
            "status": self.status.value,
            "reason": self.reason,
            "card_envelope": self.card_envelope,
        }
