"""GlobalPlatform SCP03: published vectors (KDF, session keys, recorded sessions), errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.kdf import counter_mode_cmac
from cardperso.payments.gp_scp03 import (
    CONSTANT_S_ENC,
    Scp03Error,
    Scp03Session,
    card_cryptogram,
    command_mac,
    derive_session_keys,
    host_cryptogram,
    kdf,
    parse_initialize_update_response,
    pseudo_random_card_challenge,
    response_mac,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "payments_gp_scp03.json").read_text()
)["vectors"]
H = bytes.fromhex


def _of(kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["kind"] == kind]


def _ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vs]


@pytest.mark.parametrize("v", _of("session_keys"), ids=_ids(_of("session_keys")))
def test_session_keys(v: dict[str, Any]) -> None:
    assert v["source"]
    keys = derive_session_keys(
        AES(H(v["k_enc"])), AES(H(v["k_mac"])), H(v["host_challenge"]), H(v["card_challenge"])
    )
    assert keys.s_enc == H(v["s_enc"])
    assert keys.s_mac == H(v["s_mac"])
    assert keys.s_rmac == H(v["s_rmac"])
    assert v["s_enc"] not in repr(keys).upper()


@pytest.mark.parametrize("v", _of("kdf"), ids=_ids(_of("kdf")))
def test_kdf(v: dict[str, Any]) -> None:
    assert v["source"]
    key = AES(H(v["key"]))
    for constant, out in v.get("outputs", {}).items():
        assert kdf(key, int(constant), H(v["context"]), v["length_bits"]) == H(out)
    for constant, kcv in v.get("outputs_kcv", {}).items():
        derived = kdf(key, int(constant), H(v["context"]), v["length_bits"])
        assert AES(derived).encrypt_ecb(b"\x01" * 16)[:3] == H(kcv)


@pytest.mark.parametrize("v", _of("card_challenge"), ids=_ids(_of("card_challenge")))
def test_pseudo_random_card_challenge(v: dict[str, Any]) -> None:
    assert v["source"]
    got = pseudo_random_card_challenge(AES(H(v["k_enc"])), H(v["sequence_counter"]), H(v["aid"]))
    assert got == H(v["card_challenge"])


@pytest.mark.parametrize("v", _of("trace"), ids=_ids(_of("trace")))
def test_recorded_session(v: dict[str, Any]) -> None:
    assert v["source"]
    k_enc, k_mac = AES(H(v["k_enc"])), AES(H(v["k_mac"]))
    host = H(v["host_challenge"])
    resp = parse_initialize_update_response(H(v["init_update_response"]))
    keys = derive_session_keys(k_enc, k_mac, host, resp.card_challenge)
    assert card_cryptogram(keys.s_mac, host, resp.card_challenge) == resp.card_cryptogram
    ext_auth = H(v["external_authenticate"])
    assert host_cryptogram(keys.s_mac, host, resp.card_challenge) == ext_auth[5:13]

    session = Scp03Session.open(k_enc, k_mac, host, H(v["init_update_response"]))
    assert session.external_authenticate(ext_auth[2]) == ext_auth
    (first_plain, first_wrapped), *rest = v["commands"]
    assert session.wrap(H(first_plain)) == H(first_wrapped)
    assert session.unwrap(H(v["first_response"])) == H(v["first_response_plain"])
    for plain, wrapped in rest:
        assert session.wrap(H(plain)) == H(wrapped)


def test_kdf_layout_puts_the_counter_after_l() -> None:
    key = AES(H("404142434445464748494A4B4C4D4E4F"))
    ctx = H("0011223344556677")

    def fixed(i: int) -> bytes:
        return bytes(11) + b"\x04\x00\x01\x00" + bytes([i]) + ctx

    assert kdf(key, CONSTANT_S_ENC, ctx, 256) == counter_mode_cmac(key, 32, fixed)


def test_mac_functions_chain_full_blocks() -> None:
    s_mac = bytes(range(16))
    assert len(command_mac(s_mac, bytes(16), b"\x84\x82\x01\x00\x10")) == 16
    assert len(response_mac(s_mac, bytes(16), b"", b"\x90\x00")) == 16


def _trace(level: int) -> dict[str, Any]:
    return next(v for v in _of("trace") if H(v["external_authenticate"])[2] == level)


def _open(v: dict[str, Any]) -> Scp03Session:
    return Scp03Session.open(
        AES(H(v["k_enc"])), AES(H(v["k_mac"])), H(v["host_challenge"]), H(v["init_update_response"])
    )


def test_tampered_card_cryptogram_rejected() -> None:
    v = _trace(0x11)
    bad = bytearray(H(v["init_update_response"]))
    bad[25] ^= 0x80
    with pytest.raises(Scp03Error, match="card cryptogram") as exc:
        Scp03Session.open(
            AES(H(v["k_enc"])), AES(H(v["k_mac"])), H(v["host_challenge"]), bytes(bad)
        )
    assert v["k_enc"] not in str(exc.value).upper()


def test_tampered_response_mac_rejected() -> None:
    v = _trace(0x33)
    s = _open(v)
    s.external_authenticate(0x33)
    s.wrap(H(v["commands"][0][0]))
    bad = bytearray(H(v["first_response"]))
    bad[-3] ^= 0x01
    with pytest.raises(Scp03Error, match="response MAC"):
        s.unwrap(bytes(bad))


def test_error_status_passes_without_rmac() -> None:
    v = _trace(0x11)
    s = _open(v)
    s.external_authenticate(0x11)
    s.wrap(H(v["commands"][0][0]))
    assert s.unwrap(H("6A88")) == H("6A88")


def test_errors() -> None:
    v = _trace(0x11)
    with pytest.raises(Scp03Error, match="AES"):
        kdf(TDES(bytes(16)), 4, b"", 128)
    with pytest.raises(Scp03Error, match="AES"):
        derive_session_keys(TDES(bytes(16)), AES(bytes(16)), bytes(8), bytes(8))
    with pytest.raises(Scp03Error, match="card challenge"):
        derive_session_keys(AES(bytes(16)), AES(bytes(16)), bytes(8), bytes(16))
    with pytest.raises(Scp03Error, match="length"):
        kdf(AES(bytes(16)), 4, b"", 12)
    with pytest.raises(Scp03Error, match="SCP03 length"):
        parse_initialize_update_response(bytes(28))
    with pytest.raises(Scp03Error, match="AID"):
        pseudo_random_card_challenge(AES(bytes(16)), bytes(3), bytes(4))
    s = _open(v)
    with pytest.raises(Scp03Error, match="EXTERNAL AUTHENTICATE"):
        s.wrap(H("80F22002"))
    with pytest.raises(Scp03Error, match="security level"):
        s.external_authenticate(0x02)
    s.external_authenticate(0x11)
    with pytest.raises(Scp03Error, match="already"):
        s.external_authenticate(0x11)
    assert "<redacted>" in repr(s)


def test_missing_rmac_rejected() -> None:
    v = _trace(0x11)
    s = _open(v)
    s.external_authenticate(0x11)
    s.wrap(H(v["commands"][0][0]))
    with pytest.raises(Scp03Error, match="lacks"):
        s.unwrap(H("01029000"))
