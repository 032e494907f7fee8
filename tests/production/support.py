"""Helpers shared by the production-database tests (no fixtures here; see conftest)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from cardperso.crypto.rand import SeededRandom
from cardperso.production import operators, repo
from cardperso.production.crypto_fields import FieldKeys, SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import Role, StockKind
from cardperso.production.operators import Principal, ScryptParams

FAST_SCRYPT = ScryptParams(n=2**4, r=1, p=1)  # tests only; production uses DEFAULT_SCRYPT
PASSWORD = "correct horse battery"
EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class TickClock:
    """A deterministic clock: each call is one millisecond after the last (thread-safe)."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._ticks = itertools.count()
        self._start = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._start + timedelta(milliseconds=next(self._ticks))


def make_cipher(seed: str = "field keys") -> SoftFieldCipher:
    rng = SeededRandom(seed)
    return SoftFieldCipher(FieldKeys.generate("test-fields-1", rng), rng=rng.fork("nonces"))


def pan_for(i: int) -> str:
    """A 16-digit test PAN (not Luhn-checked; the DB layer does not care)."""
    return f"4{i:015d}"


def records(n: int, start: int = 0) -> Iterator[repo.JobRecord]:
    for i in range(start, start + n):
        yield repo.JobRecord(
            record_ref=f"R{i:06d}",
            pan=pan_for(i),
            record=f'{{"pan":"{pan_for(i)}","name":"HOLDER {i}"}}'.encode(),
        )


def serials(n: int, prefix: str = "A1") -> list[str]:
    return [f"{prefix}{i:014X}" for i in range(n)]


class Staff:
    """One principal per role, created through the real bootstrap path."""

    def __init__(self, db: Database) -> None:
        with db.transaction() as s:
            so = operators.create_operator(
                s,
                "sofia",
                PASSWORD,
                [Role.SECURITY_OFFICER],
                by=None,
                when=db.now(),
                params=FAST_SCRYPT,
            )
            self.security_officer = Principal(so.id, so.name, so.role_set)
        made: dict[Role, Principal] = {}
        with db.transaction() as s:
            for name, role in (
                ("sam", Role.SUPERVISOR),
                ("olga", Role.OPERATOR),
                ("ada", Role.AUDITOR),
            ):
                op = operators.create_operator(
                    s,
                    name,
                    PASSWORD,
                    [role],
                    by=self.security_officer,
                    when=db.now(),
                    params=FAST_SCRYPT,
                )
                made[role] = Principal(op.id, op.name, op.role_set)
        self.supervisor = made[Role.SUPERVISOR]
        self.operator = made[Role.OPERATOR]
        self.auditor = made[Role.AUDITOR]


def setup_batch(
    db: Database,
    staff: Staff,
    cipher: SoftFieldCipher,
    n_jobs: int,
    n_cards: int,
    *,
    reference: str = "FILE-001",
    max_attempts: int = repo.DEFAULT_MAX_ATTEMPTS,
    start: bool = True,
    serial_prefix: str = "A1",
) -> int:
    """Issuer, profile, a batch of ``n_jobs`` records and ``n_cards`` blank cards."""
    with db.transaction() as s:
        issuer = repo.register_issuer(s, "BANK1", "First Test Bank", when=db.now())
        profile = repo.register_profile(s, "debit", 1, "id: debit\nversion: 1\n", when=db.now())
        batch = repo.create_batch(
            s,
            issuer=issuer,
            profile=profile,
            reference=reference,
            records=records(n_jobs),
            cipher=cipher,
            by=staff.supervisor,
            when=db.now(),
            max_attempts=max_attempts,
        )
        if n_cards:
            repo.receive_stock(
                s,
                serials(n_cards, serial_prefix),
                kind=StockKind.BLANK,
                by=staff.operator,
                when=db.now(),
                lot=f"LOT-{reference}",
            )
        batch_id = batch.id
    if start:
        with db.transaction() as s:
            repo.start_batch(s, batch_id, by=staff.operator, when=db.now())
    return batch_id
