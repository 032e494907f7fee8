"""GP static key diversification (EMV CPS and VISA2): published vectors, layout, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cardperso.crypto.ciphers import AES, TDES
from cardperso.payments.diversification import (
    DiversificationError,
    KeyType,
    diversify_emv,
    diversify_keyset,
    diversify_visa2,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "payments_gp_diversification.json").read_text()
)["vectors"]
H = bytes.fromhex
MASTER = H("404142434445464748494A4B4C4D4E4F")
NAMES = {KeyType.ENC: "enc", KeyType.MAC: "mac", KeyType.DEK: "dek"}


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    assert v["source"]
    master = TDES(H(v["master"]))
    fn = diversify_emv if v["method"] == "emv" else diversify_visa2
    keyset = diversify_keyset(master, H(v["kdd"]), v["method"])
    for kt, name in NAMES.items():
        key = fn(master, H(v["kdd"]), kt)
        assert keyset[kt] == key and len(key) == 16
        if name in v:
            assert key.hex().upper() == v[name]
        if f"{name}_kcv" in v:
            assert TDES(key).encrypt_ecb(bytes(8))[:3].hex().upper() == v[f"{name}_kcv"]


def test_layouts_use_the_documented_bytes() -> None:
    # EMV CPS uses KDD[4..9] only; VISA2 uses KDD[0..1] and KDD[4..7] only.
    r = random.Random(7)
    master = TDES(MASTER)
    for _ in range(200):
        kdd = bytearray(r.randbytes(10))
        other = bytearray(kdd)
        other[0:4] = r.randbytes(4)
        assert diversify_emv(master, bytes(kdd), 1) == diversify_emv(master, bytes(other), 1)
        other = bytearray(kdd)
        other[2:4] = r.randbytes(2)
        other[8:10] = r.randbytes(2)
        assert diversify_visa2(master, bytes(kdd), 2) == diversify_visa2(master, bytes(other), 2)


def test_block_layout_matches_ecb_of_the_documented_template() -> None:
    master = TDES(MASTER)
    kdd = H("A1A2A3A4A5A6A7A8A9AA")
    emv = kdd[4:] + b"\xf0\x03" + kdd[4:] + b"\x0f\x03"
    assert diversify_emv(master, kdd, KeyType.DEK) == master.encrypt_ecb(emv)
    v2 = kdd[:2] + kdd[4:8]
    visa2 = v2 + b"\xf0\x01" + v2 + b"\x0f\x01"
    assert diversify_visa2(master, kdd, KeyType.ENC) == master.encrypt_ecb(visa2)


@pytest.mark.parametrize("fn", [diversify_emv, diversify_visa2])
def test_errors(fn: Any) -> None:
    with pytest.raises(DiversificationError, match="10 bytes"):
        fn(TDES(MASTER), bytes(9), 1)
    with pytest.raises(DiversificationError, match="key type"):
        fn(TDES(MASTER), bytes(10), 4)
    with pytest.raises(DiversificationError, match="TDES") as exc:
        fn(AES(MASTER), bytes(10), 1)
    assert MASTER.hex().upper() not in str(exc.value).upper()
    with pytest.raises(DiversificationError, match="method"):
        diversify_keyset(TDES(MASTER), bytes(10), "visa1")
