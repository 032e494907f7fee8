"""Injected randomness: a seeded run is byte-for-byte repeatable (DESIGN.md §5)."""

from __future__ import annotations

import pytest

from cardperso.crypto import RandomSource, SeededRandom, SystemRandom


def test_seeded_stream_is_repeatable_and_seed_dependent() -> None:
    assert SeededRandom(b"batch-1").random_bytes(40) == SeededRandom(b"batch-1").random_bytes(40)
    assert SeededRandom("batch-1").random_bytes(16) == SeededRandom(b"batch-1").random_bytes(16)
    assert SeededRandom(1).random_bytes(16) != SeededRandom(2).random_bytes(16)


def test_stream_is_continuous() -> None:
    a, b = SeededRandom(5), SeededRandom(5)
    assert a.random_bytes(7) + a.random_bytes(9) == b.random_bytes(16)


def test_fork_is_deterministic_and_independent() -> None:
    a, b = SeededRandom(9), SeededRandom(9)
    fa, fb = a.fork("card-1"), b.fork("card-1")
    assert fa.random_bytes(16) == fb.random_bytes(16)
    assert SeededRandom(9).fork("card-2").random_bytes(16) != SeededRandom(9).fork(
        "card-1"
    ).random_bytes(16)


def test_protocol_and_repr() -> None:
    for src in (SeededRandom(b"s3cret-seed"), SystemRandom()):
        assert isinstance(src, RandomSource)
        assert len(src.random_bytes(12)) == 12
        assert "s3cret" not in repr(src)


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError):
        SeededRandom(1).random_bytes(-1)
