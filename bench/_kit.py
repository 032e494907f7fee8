"""What several benchmarks share: timing a call in growing batches, and entering a
known key into an HSM by a two-custodian ceremony (as the HSM tests do)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm import HsmSession, KeyAlgorithm, KeyHandle, KeyUsage
from cardperso.hsm.ceremony import key_check_value


def rate(fn: Callable[[], object], seconds: float, *, max_batch: int = 4096) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (batches double up to
    ``max_batch``, so the clock is read rarely for fast calls)."""
    n, batch = 0, 4
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, max_batch)


def us_per_call(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call of ``fn`` over about ``seconds``."""
    return 1e6 / rate(fn, seconds)


def load_known_key(
    session: HsmSession, label: str, alg: KeyAlgorithm, usage: KeyUsage, clear: bytes
) -> KeyHandle:
    """Enter a known key by a two-custodian ceremony (components derived from the label)."""
    first = SeededRandom(label).random_bytes(len(clear))
    second = bytes(a ^ b for a, b in zip(clear, first, strict=True))
    c = session.begin_ceremony(label, alg, usage)
    c.add_component("alice", SecretBytes(first), key_check_value(alg, first))
    c.add_component("bob", SecretBytes(second), key_check_value(alg, second))
    return c.complete()
