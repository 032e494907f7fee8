"""The soft HSM's keystore file: encrypted at rest, authenticated header, atomic writes."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.hsm import KeyAlgorithm, KeystoreError, KeyUsage, PinBlockFormat, Role, SoftHsm
from cardperso.hsm.keystore import MAGIC, Keystore

from .conftest import FAST_SCRYPT, PASSPHRASE, make_soft
from .support import PAN, Harness, TickClock, build_kit

WRONG = "cannot open the keystore: wrong passphrase or damaged file"


def header_and_body(path: Path) -> tuple[dict[str, object], int]:
    blob = path.read_bytes()
    size = int.from_bytes(blob[4:8], "big")
    return json.loads(blob[8 : 8 + size]), 8 + size


def test_keys_survive_a_reopen(soft: Harness) -> None:
    kit = build_kit(soft)
    handles = soft.officer.list_keys()
    soft.close()
    assert soft.keystore is not None
    with SoftHsm.open(soft.keystore, PASSPHRASE, rng=SeededRandom(9), clock=TickClock()) as again:
        s = again.session(Role.DATAPREP, "after restart")
        assert s.list_keys() == handles
        assert len(s.generate_pin(kit.zpk, PAN, PinBlockFormat.ISO_0)) == 8


def test_file_layout_and_mode(soft: Harness) -> None:
    assert soft.keystore is not None
    build_kit(soft)
    blob = soft.keystore.read_bytes()
    assert blob[:4] == MAGIC
    header, _ = header_and_body(soft.keystore)
    assert header["format"] == 1 and header["cipher"] == "AES-256-GCM"
    kdf = header["kdf"]
    assert isinstance(kdf, dict) and kdf["name"] == "scrypt" and kdf["n"] == FAST_SCRYPT
    assert stat.S_IMODE(os.stat(soft.keystore).st_mode) == 0o600
    assert soft.audit is not None and stat.S_IMODE(os.stat(soft.audit).st_mode) == 0o600
    assert [p.name for p in soft.keystore.parent.iterdir() if p.name.endswith(".tmp")] == []
    for label in ("km-aes", "zpk", "KD_MASTER"):  # names are inside the ciphertext too
        assert label.encode() not in blob


def test_wrong_passphrase_gives_one_plain_error(soft: Harness) -> None:
    assert soft.keystore is not None
    with pytest.raises(KeystoreError) as info:
        Keystore.open(soft.keystore, SecretStr("not the passphrase"))
    assert str(info.value) == f"HSM open_keystore: {WRONG}"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_failed_opens_are_audited(soft: Harness) -> None:
    assert soft.keystore is not None and soft.audit is not None
    soft.close()
    with pytest.raises(KeystoreError):
        SoftHsm.open(soft.keystore, SecretStr("guess one"), operator="intruder")
    last = json.loads(soft.audit.read_text().splitlines()[-1])
    assert (last["operation"], last["operator"], last["result"]) == (
        "open_keystore", "intruder", "KeystoreError"
    )  # fmt: skip


@pytest.mark.parametrize("where", ["magic", "header", "salt", "nonce", "body", "tag", "truncated"])
def test_tampering_is_refused(soft: Harness, where: str) -> None:
    assert soft.keystore is not None
    build_kit(soft)
    blob = bytearray(soft.keystore.read_bytes())
    header, start = header_and_body(soft.keystore)
    if where == "magic":
        blob[0] ^= 1
    elif where == "header":
        text = blob[8:start].replace(b'"generation":', b'"generation": ')
        blob = blob[:4] + len(text).to_bytes(4, "big") + text + blob[start:]
    elif where in ("salt", "nonce"):
        kdf = header["kdf"]
        assert isinstance(kdf, dict)
        old = (kdf["salt"] if where == "salt" else header["nonce"]).encode()  # type: ignore[union-attr]
        new = bytes([old[0] ^ 0x01]) + old[1:]
        i = blob.index(old)
        blob[i : i + len(old)] = new
    elif where == "body":
        blob[start + 5] ^= 0x80
    elif where == "tag":
        blob[-1] ^= 0x01
    else:
        blob = blob[:-20]
    soft.keystore.write_bytes(bytes(blob))
    with pytest.raises(KeystoreError) as info:
        Keystore.open(soft.keystore, PASSPHRASE)
    if where == "magic":
        assert "not a cardperso keystore" in str(info.value)
    else:
        assert WRONG in str(info.value)


def test_a_doctored_cost_cannot_stall_an_open(soft: Harness) -> None:
    assert soft.keystore is not None
    blob = soft.keystore.read_bytes()
    header, start = header_and_body(soft.keystore)
    assert isinstance(header["kdf"], dict)
    header["kdf"]["n"] = 2**30
    text = json.dumps(header).encode()
    soft.keystore.write_bytes(blob[:4] + len(text).to_bytes(4, "big") + text + blob[start:])
    t0 = time.perf_counter()
    with pytest.raises(KeystoreError, match="out of range"):
        Keystore.open(soft.keystore, PASSPHRASE)
    assert time.perf_counter() - t0 < 1


def test_create_refuses_to_overwrite_and_weak_passphrases(tmp_path: Path) -> None:
    path = tmp_path / "k.cpks"
    path.write_bytes(b"something")
    with pytest.raises(KeystoreError, match="already exists"):
        SoftHsm.create(path, PASSPHRASE, scrypt_n=FAST_SCRYPT)
    assert path.read_bytes() == b"something"
    with pytest.raises(KeystoreError, match="at least"):
        SoftHsm.create(tmp_path / "other.cpks", SecretStr("short"), scrypt_n=FAST_SCRYPT)
    with pytest.raises(KeystoreError, match="out of range"):
        SoftHsm.create(tmp_path / "third.cpks", PASSPHRASE, scrypt_n=1000)


def test_every_write_takes_a_fresh_nonce(soft: Harness) -> None:
    assert soft.keystore is not None
    nonces = set()
    for i in range(5):
        soft.new(f"k{i}", KeyAlgorithm.AES_128, KeyUsage.MAC)
        header, _ = header_and_body(soft.keystore)
        nonces.add(header["nonce"])
        assert header["generation"] == i + 2
    assert len(nonces) == 5


def test_a_seeded_soft_hsm_is_repeatable(tmp_path: Path) -> None:
    """Same seed, clock and calls: byte-identical keystore, audit log and outputs."""
    outputs = []
    files = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        h = make_soft(tmp_path / run, seed="golden")
        kit = build_kit(h)
        dp = h.session(Role.DATAPREP)
        out = [dp.generate_pin(kit.zpk, PAN, PinBlockFormat(f)) for f in (0, 1, 3)]
        out.append(dp.generate_pin(kit.zpk_aes, PAN, PinBlockFormat.ISO_4, length=12))
        out.append(h.officer.export_key_block(kit.kek, kit.exportable).encode())
        out.append(
            h.session(Role.PERSONALIZATION)
            .ecdh_agree(bytes(h.officer.public_key(kit.ec)))
            .host_public
        )
        h.close()
        assert h.keystore is not None and h.audit is not None
        outputs.append(out)
        files.append((h.keystore.read_bytes(), h.audit.read_bytes()))
    assert outputs[0] == outputs[1]
    assert files[0] == files[1]
