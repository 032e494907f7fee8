"""DES key parity: published examples, psec/pyemv oracles, properties."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psec import des as psec_des
from pyemv import tools as pyemv_tools

from cardperso.crypto import adjust_des_parity, has_odd_parity

from ._vectors import h, load

VECTORS = load("crypto_parity")["vectors"]
ORACLE_ROUNDS = 1000


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_published_adjustment(v: dict[str, Any]) -> None:
    adjusted = adjust_des_parity(h(v["key"]))
    assert adjusted == h(v["adjusted"])
    assert has_odd_parity(adjusted)


def test_matches_psec_and_pyemv() -> None:
    rnd = random.Random(46)
    for _ in range(ORACLE_ROUNDS):
        key = rnd.randbytes(rnd.choice((8, 16, 24)))
        ours = adjust_des_parity(key)
        assert ours == psec_des.adjust_key_parity(key) == pyemv_tools.adjust_key_parity(key)


@given(st.binary(min_size=1, max_size=32))
def test_adjusted_key_has_odd_parity_and_differs_only_in_low_bits(key: bytes) -> None:
    adjusted = adjust_des_parity(key)
    assert has_odd_parity(adjusted)
    assert adjust_des_parity(adjusted) == adjusted
    assert all((a ^ b) in (0, 1) for a, b in zip(key, adjusted, strict=True))
    assert has_odd_parity(key) == (adjusted == key)


def test_has_odd_parity_examples() -> None:
    assert has_odd_parity(h("0123456789abcdef"))
    assert not has_odd_parity(h("0023456789abcdef"))
    assert not has_odd_parity(b"")
