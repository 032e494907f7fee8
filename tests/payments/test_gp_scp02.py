"""GlobalPlatform SCP02: published vectors (session keys, a recorded session), errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cardperso.crypto.ciphers import AES, DES, TDES
from cardperso.crypto.mac import mac_alg1, retail_mac
from cardperso.payments.gp_scp02 import (
    CONSTANT_ENC,
    Scp02Error,
    Scp02Session,
    card_cryptogram,
    command_mac,
    derive_session_key,
    derive_session_keys,
    encrypt_icv,
    host_cryptogram,
    parse_initialize_update_response,
    wrap_command,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "payments_gp_scp02.json").read_text()
)["vectors"]
H = bytes.fromhex
SESSION = [v for v in VECTORS if v["kind"] == "session_keys"]
TRACES = [v for v in VECTORS if v["kind"] == "trace"]


def _kcv(key: bytes) -> str:
    return TDES(key).encrypt_ecb(bytes(8))[:3].hex().upper()


@pytest.mark.parametrize("v", SESSION, ids=[v["id"] for v in SESSION])
def test_session_keys(v: dict[str, Any]) -> None:
    assert v["source"]
    keys = derive_session_keys(
        TDES(H(v["k_enc"])), TDES(H(v["k_mac"])), TDES(H(v["k_dek"])), H(v["sequence_counter"])
    )
    for name in ("s_enc", "c_mac", "s_dek", "r_mac"):
        value = getattr(keys, name)
        if name in v:
            assert value.hex().upper() == v[name]
        if f"{name}_kcv" in v:
            assert _kcv(value) == v[f"{name}_kcv"]
    assert "<redacted>" in repr(keys) and v["k_enc"] not in repr(keys).upper()


@pytest.mark.parametrize("v", TRACES, ids=[v["id"] for v in TRACES])
def test_recorded_session(v: dict[str, Any]) -> None:
    assert v["source"]
    k_enc, k_mac, k_dek = TDES(H(v["k_enc"])), TDES(H(v["k_mac"])), TDES(H(v["k_dek"]))
    resp = parse_initialize_update_response(H(v["init_update_response"]))
    keys = derive_session_keys(k_enc, k_mac, k_dek, resp.sequence_counter)
    host = H(v["host_challenge"])
    assert card_cryptogram(keys.s_enc, host, resp.sequence_counter, resp.card_challenge) == H(
        v["card_cryptogram"]
    )
    assert host_cryptogram(keys.s_enc, resp.sequence_counter, resp.card_challenge, host) == H(
        v["host_cryptogram"]
    )
    session = Scp02Session.open(
        k_enc, k_mac, k_dek, host, H(v["init_update_response"]), i_param=v["i_param"]
    )
    assert session.external_authenticate(v["security_level"]) == H(v["external_authenticate"])
    for plain, wrapped in v["commands"]:
        assert session.wrap(H(plain)) == H(wrapped)
    assert "<redacted>" in repr(session)


def test_functions_match_their_definitions() -> None:
    # E.4.1: session key = 3DES-CBC(static)[constant || SC || 0*12]
    k = TDES(H("404142434445464748494A4B4C4D4E4F"))
    assert derive_session_key(k, CONSTANT_ENC, H("0042")) == k.encrypt_cbc(
        CONSTANT_ENC + H("0042") + bytes(12)
    )
    # E.4.2: full 3DES MAC, method 2 padding
    s_enc = H("0123456789ABCDEFFEDCBA9876543210")
    hc, sc, cc = H("1122334455667788"), H("0001"), H("AABBCCDDEEFF")
    assert card_cryptogram(s_enc, hc, sc, cc) == mac_alg1(TDES(s_enc), hc + sc + cc, 2)
    # E.4.4: with a zero ICV the C-MAC is the plain retail MAC, method 2 padding
    data = H("8482010010BA6961667737C5BC")
    assert command_mac(s_enc, bytes(8), data) == retail_mac(s_enc, data, 2)
    assert encrypt_icv(s_enc, bytes(8)) == DES(s_enc[:8]).encrypt_ecb(bytes(8))


def test_without_icv_encryption_the_chain_differs() -> None:
    v = TRACES[0]
    keys = [TDES(H(v[k])) for k in ("k_enc", "k_mac", "k_dek")]
    s = Scp02Session.open(*keys, H(v["host_challenge"]), H(v["init_update_response"]), i_param=5)
    assert s.external_authenticate(1) == H(v["external_authenticate"])  # ICV zero either way
    assert s.wrap(H(v["commands"][0][0])) != H(v["commands"][0][1])


def test_tampered_card_cryptogram_rejected() -> None:
    v = TRACES[0]
    keys = [TDES(H(v[k])) for k in ("k_enc", "k_mac", "k_dek")]
    bad = bytearray(H(v["init_update_response"]))
    bad[-1] ^= 0x01
    with pytest.raises(Scp02Error, match="card cryptogram") as exc:
        Scp02Session.open(*keys, H(v["host_challenge"]), bytes(bad))
    for k in ("k_enc", "k_mac", "k_dek"):
        assert v[k] not in str(exc.value).upper()


def test_errors() -> None:
    v = TRACES[0]
    keys = [TDES(H(v[k])) for k in ("k_enc", "k_mac", "k_dek")]
    with pytest.raises(Scp02Error, match="TDES"):
        derive_session_key(AES(bytes(16)), CONSTANT_ENC, bytes(2))
    with pytest.raises(Scp02Error, match="sequence counter"):
        derive_session_key(keys[0], CONSTANT_ENC, bytes(3))
    with pytest.raises(Scp02Error, match="28 bytes"):
        parse_initialize_update_response(bytes(27))
    not_scp02 = bytearray(H(v["init_update_response"]))
    not_scp02[11] = 0x03
    with pytest.raises(Scp02Error, match="SCP03"):
        parse_initialize_update_response(bytes(not_scp02))
    s = Scp02Session.open(*keys, H(v["host_challenge"]), H(v["init_update_response"]))
    with pytest.raises(Scp02Error, match="EXTERNAL AUTHENTICATE"):
        s.wrap(H("80F22002"))
    s.external_authenticate()
    with pytest.raises(Scp02Error, match="already"):
        s.external_authenticate()
    with pytest.raises(Scp02Error, match="APDU"):
        s.wrap(H("80F220"))
    with pytest.raises(Scp02Error, match="short"):
        wrap_command(bytes(16), bytes(8), H("80F22002F8") + bytes(248))
