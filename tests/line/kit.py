"""Helpers for the line tests: a bureau keystore, an imported batch, fault injection.

Faults are injected the way the issue asks, from outside the line: through the
feeder's fault hook, which sees every card put into a module's slot (tests may
touch the simulated card behind a ``VirtualReader``; the line never does).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.errors import ReaderError
from cardperso.hsm import RequestSeededRandom, SoftHsm
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.feeder import stock_serials
from cardperso.line.usecases import import_batch, receive_stock
from cardperso.line.visual import FaceRender
from cardperso.production.db import Database
from cardperso.readers import Reader
from cardperso.readers.virtual import VirtualReader
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
    hsm: SoftHsm,
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


KINDS = ("write_failure", "tearing", "dead", "stripe", "misprint")


@dataclass
class FaultPlan:
    """Random faults for a share of the cards, and optionally one broken module."""

    seed: int
    rate: float = 0.08
    broken_module: str | None = None
    kinds: tuple[str, ...] = KINDS
    faults: dict[str, str] = field(default_factory=dict)
    broken_cards: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

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
        return reader

    def stripe(self, serial: str, track: int, bits: str) -> str:
        if self.faults.get(serial) != "stripe":
            return bits
        i = bits.index("1") + 7 * 3 + 2  # a data bit of the fourth character
        return bits[:i] + ("0" if bits[i] == "1" else "1") + bits[i + 1 :]

    def visual(self, serial: str, face: FaceRender) -> FaceRender:
        if self.faults.get(serial) != "misprint" or not face.texts:
            return face
        texts = list(face.texts)
        texts[-1] = texts[-1][:-1] + ("X" if not texts[-1].endswith("X") else "Y")
        return FaceRender(face.image, tuple(texts))


def hooks(plan: FaultPlan) -> dict[str, Callable[..., object]]:
    return {"stripe_fault": plan.stripe, "visual_fault": plan.visual}
