"""Helpers for the line tests: a bureau keystore, an imported batch, fault injection.

Faults are injected the way the issue asks, from outside the line: through the
feeder's fault hook, which sees every card put into a module's slot (tests may
touch the simulated card behind a ``VirtualReader``; the line never does), and the
stripe and visual hooks, which see what the read head and the camera get.

Fault kinds (:data:`KINDS` for the line's own robustness, :data:`QC_KINDS` for
quality control, each meant for one check):

==============  ==========================================================  ==============
kind            what is wrong                                               caught by
==============  ==========================================================  ==============
write_failure   the EEPROM fails for good                                   chip modules
tearing         power lost once in the middle of a command                  (retry)
dead            the card does not answer at reset                           feeder
stripe          a flipped bit on the stripe                                 magstripe
misprint        one character of the card body's last text line is wrong    qc (vision)
chip_data       after personalization, a byte of a personalized file        chip_check
                changes (the chip holds wrong data)                         (command/resp.)
wrong_key       after personalization, a card key (one the chip check does  qc (hsm check)
                not use) has a wrong value
blank_chip      the chip that reaches the chip check is blank (never        chip_check
                initialized or personalized)
photo_swap      the card body shows another cardholder's photo              qc (vision)
wrong_track     a well-formed track with another account's PAN (parity,     magstripe
                LRC and format right)
==============  ==========================================================  ==============
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cardperso.card.store import PHASE_PERSO_WRITTEN, Lifecycle, ObjType
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.magstripe import (
    build_track2,
    decode_bits,
    encode_bits,
    parse_track2,
)
from cardperso.dataprep.prepared import CardBodyData
from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.errors import ReaderError
from cardperso.hsm import Hsm, RequestSeededRandom, SoftHsm
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.feeder import stock_serials
from cardperso.line.magstripe import CLOCKING_BITS
from cardperso.line.usecases import import_batch, receive_stock
from cardperso.line.visual import FaceRender, render_face
from cardperso.production.db import Database
from cardperso.readers import Reader
from cardperso.readers.virtual import VirtualReader, virtual_reader
from production.support import Staff

PASSPHRASE = SecretStr("line tests, not secret")
TODAY = date(2026, 3, 2)
HSM_SEED = "line tests"


def make_keystore(directory: Path) -> Path:
    path = directory / "bureau.cpks"
    hsm = SoftHsm.create(path, PASSPHRASE, rng=RequestSeededRandom(HSM_SEED), scrypt_n=2**10)
    provision_demo_keys(hsm)
    hsm.close()
    return path


def open_hsm(path: Path) -> SoftHsm:
    return SoftHsm.open(path, PASSPHRASE, operator="tests", rng=RequestSeededRandom(HSM_SEED))


def stock_seed(product: str) -> str:
    return f"line-tests-{product}"


def import_product(
    db: Database,
    hsm: Hsm,
    staff: Staff,
    product: str,
    count: int,
    directory: Path,
    *,
    seed: int = 7,
    spare: float = 0.5,
    max_attempts: int = 6,
) -> int:
    """Generate ``count`` records of ``product``, import them, book stock; the batch id."""
    path = directory / f"issuer-{product}.csv"
    generate_issuer_file(
        product, path, count, seed, today=TODAY, batch_id=f"{product.upper()}-{seed}"
    )
    result = import_batch(
        db, hsm, path, by=staff.supervisor, today=TODAY, max_attempts=max_attempts
    )
    serials = stock_serials(stock_seed(product), 0, count + int(count * spare) + 10)
    receive_stock(db, serials, by=staff.operator, lot=f"LOT-{product}")
    return result.batch_id


# -- faults ---------------------------------------------------------------------------------


class _Wrapper:
    """A Reader around a VirtualReader (for faults that need to act at reset)."""

    def __init__(self, inner: VirtualReader) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def reset(self) -> bytes:
        return self.inner.reset()

    def transmit(self, apdu: bytes) -> bytes:
        return self.inner.transmit(apdu)

    @property
    def elapsed(self) -> float:
        return self.inner.elapsed

    def close(self) -> None:
        self.inner.close()


class FailingEeprom(_Wrapper):
    """EEPROM that fails for good: power is lost ``first`` page writes into the first
    power-up, and within the first few writes of every later one (a worn-out page)."""

    def __init__(self, inner: VirtualReader, first: int) -> None:
        super().__init__(inner)
        self.after = first

    def reset(self) -> bytes:
        atr = self.inner.reset()
        self.inner.card.eeprom.arm_power_loss(self.after)
        self.after = 2
        return atr


class DeadCard(_Wrapper):
    def reset(self) -> bytes:
        raise ReaderError(f"{self.name}: card mute at reset (no answer to reset)")


class BrokenContacts(_Wrapper):
    """A module whose contact unit fails after a few commands of every card."""

    def __init__(self, inner: VirtualReader, after: int) -> None:
        super().__init__(inner)
        self.left = after

    def transmit(self, apdu: bytes) -> bytes:
        self.left -= 1
        if self.left < 0:
            raise ReaderError(f"{self.name}: contact failure")
        return self.inner.transmit(apdu)


class AfterPerso(_Wrapper):
    """Acts on the card once, at the first power-up after it was personalized (the chip
    check's power cycle): the chip module's work is done, the check is still to come."""

    def __init__(self, inner: VirtualReader, action: Callable[[VirtualReader], None]) -> None:
        super().__init__(inner)
        self.action: Callable[[VirtualReader], None] | None = action

    def reset(self) -> bytes:
        atr = self.inner.reset()
        if (
            self.action is not None
            and self.inner.card.st.system.lifecycle == Lifecycle.PERSONALIZED
        ):
            action, self.action = self.action, None
            action(self.inner)
            atr = self.inner.reset()
        return atr


def corrupt_file(reader: VirtualReader, rng: random.Random) -> None:
    """Change one byte of a file written at personalization (the data a read-back checks)."""
    card = reader.card
    files = [
        e
        for _, e in card.st.iter_entries()
        if e.type in (ObjType.EF_TRANSPARENT, ObjType.EF_LINEAR) and e.phase & PHASE_PERSO_WRITTEN
    ]
    e = rng.choice(files)
    length = e.size if e.type == ObjType.EF_TRANSPARENT else e.size * e.nrec
    data = bytes(card.eeprom.data[e.body : e.body + length])
    written = [i for i, b in enumerate(data) if b not in (0x00, 0xFF)] or [0]
    addr = e.body + rng.choice(written)  # a byte of the record's data, not of the free tail
    card.eeprom.data[addr] ^= 1 << rng.randrange(8)
    card.power_off()


def corrupt_key(reader: VirtualReader, rng: random.Random) -> None:
    """Change a card key the chip check does not use: a symmetric key with the internal
    authentication usage only, else an EC key that signs, else any key."""
    card = reader.card
    keys = [e for _, e in card.st.iter_entries() if e.type in (ObjType.KEY, ObjType.ECKEY)]
    int_only = [e for e in keys if e.type == ObjType.KEY and e.extra[1] == 0x02]
    signing = [e for e in keys if e.type == ObjType.ECKEY and e.extra[1] & 0x02]
    e = rng.choice(int_only or signing or keys)
    span = 32 if e.type == ObjType.ECKEY else e.size  # an EC key: its private scalar
    addr = e.body + 1 + rng.randrange(span - 2)
    card.eeprom.data[addr] ^= 0x5A
    card.power_off()


def blank_chip(reader: VirtualReader) -> None:
    """Put a blank chip with the same serial in the slot."""
    serial = reader.card.chip_serial
    reader.card = virtual_reader(f"blank/{serial.hex()}", serial=serial).card


KINDS = ("write_failure", "tearing", "dead", "stripe", "misprint")
QC_KINDS = ("chip_data", "wrong_key", "blank_chip", "misprint", "photo_swap", "wrong_track")
"""The fault kinds quality control is there to catch (see the module notes)."""


def _misprint_text(text: str, rng: random.Random) -> str:
    positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    i = rng.choice(positions)
    pool = "0123456789" if text[i].isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return text[:i] + rng.choice([c for c in pool if c != text[i]]) + text[i + 1 :]


def misprinted(body: CardBodyData, rng: random.Random) -> CardBodyData:
    """``body`` with one character of its last front text line wrong."""
    laser = [t for t in body.laser if t[0] == "front"]
    if laser:
        side, x, y, h, text = laser[-1]
        lines = list(body.laser)
        lines[lines.index(laser[-1])] = (side, x, y, h, _misprint_text(text, rng))
        return CardBodyData(body.emboss, tuple(lines), body.photo)
    area, row, text = body.emboss[-1]
    return CardBodyData(
        (*body.emboss[:-1], (area, row, _misprint_text(text, rng))), body.laser, body.photo
    )


def _mirrored(photo: dict[str, object]) -> dict[str, object]:
    w, h = int(str(photo["width_px"])), int(str(photo["height_px"]))
    rows = bytes.fromhex(str(photo["rows"]))
    stride = (w + 7) // 8
    out = bytearray()
    for y in range(h):
        bits = "".join(f"{b:08b}" for b in rows[y * stride : (y + 1) * stride])[:w][::-1]
        bits = bits.ljust(stride * 8, "0")
        out += int(bits, 2).to_bytes(stride, "big")
    return {**photo, "rows": out.hex().upper()}


def wrong_track_bits(bits: str) -> str:
    """A well-formed track 2 with another (Luhn-valid) PAN in place of the one read."""
    data = parse_track2(decode_bits(bits, 2))
    body = data.pan[:-1]
    i = len(body) // 2
    body = body[:i] + str((int(body[i]) + 1) % 10) + body[i + 1 :]
    total = 0
    for k, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if k % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    pan = body + str((10 - total % 10) % 10)
    return encode_bits(
        build_track2(pan, data.expiry, data.service_code, data.discretionary), CLOCKING_BITS
    )


@dataclass
class FaultPlan:
    """Random faults for a share of the cards, and optionally one broken module."""

    seed: int
    rate: float = 0.08
    broken_module: str | None = None
    kinds: tuple[str, ...] = KINDS
    faults: dict[str, str] = field(default_factory=dict)
    broken_cards: set[str] = field(default_factory=set)
    only_first: bool = False
    """Fault each card only on its first attempt (its remake is meant to pass)."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._photos: dict[str, dict[str, object]] = {}

    def _kind(self, serial: str) -> str | None:
        if serial in self.faults:
            return self.faults[serial]
        if self._rng.random() < self.rate:
            kind = self._rng.choice(self.kinds)
            self.faults[serial] = kind
            return kind
        return None

    def reader(self, module_id: str, serial: str, reader: Reader) -> Reader:
        assert isinstance(reader, VirtualReader)
        if module_id == self.broken_module:
            self.broken_cards.add(serial)
            return BrokenContacts(reader, 1 + self._rng.randrange(12))
        kind = self._kind(serial)
        if kind == "write_failure":
            return FailingEeprom(reader, self._rng.randrange(0, 40))
        if kind == "tearing":  # power lost once, in the middle of some command
            reader.card.eeprom.arm_power_loss(self._rng.randrange(1, 40))
        if kind == "dead":
            return DeadCard(reader)
        rng = random.Random(f"{self.seed}/{serial}")
        if kind == "chip_data":
            return AfterPerso(reader, lambda r: corrupt_file(r, rng))
        if kind == "wrong_key":
            return AfterPerso(reader, lambda r: corrupt_key(r, rng))
        if kind == "blank_chip":
            return AfterPerso(reader, blank_chip)
        return reader

    def stripe(self, serial: str, track: int, bits: str) -> str:
        kind = self.faults.get(serial)
        if kind == "wrong_track" and track == 2:
            return wrong_track_bits(bits)
        if kind != "stripe":
            return bits
        i = bits.index("1") + 7 * 3 + 2  # a data bit of the fourth character
        return bits[:i] + ("0" if bits[i] == "1" else "1") + bits[i + 1 :]

    def visual(self, serial: str, face: FaceRender) -> FaceRender:
        kind = self.faults.get(serial)
        body = face.body
        if body is None:
            return face
        if body.photo is not None:
            self._photos.setdefault(str(body.photo["rows"]), body.photo)
        if kind == "misprint" and face.texts:
            wrong = misprinted(body, random.Random(f"{self.seed}/{serial}"))
            return FaceRender(
                render_face(wrong, face.px_per_mm).image, face.texts, body, face.px_per_mm
            )
        if kind == "photo_swap" and body.photo is not None:
            others = [p for k, p in self._photos.items() if k != str(body.photo["rows"])]
            other = others[-1] if others else _mirrored(body.photo)
            swapped = CardBodyData(body.emboss, body.laser, other)
            return FaceRender(
                render_face(swapped, face.px_per_mm).image, face.texts, body, face.px_per_mm
            )
        return face


def hooks(plan: FaultPlan) -> dict[str, Callable[..., object]]:
    return {"stripe_fault": plan.stripe, "visual_fault": plan.visual}
