"""Cardholder data at rest: sealed, masked, digested; never the clear PAN."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes
from cardperso.errors import InputError
from cardperso.production import repo
from cardperso.production.crypto_fields import (
    FieldCipherError,
    FieldKeys,
    SoftFieldCipher,
    mask_pan,
    normalize_pan,
    pan_digest,
)
from cardperso.production.db import Database, upgrade

from .support import FAST_SCRYPT, Staff, TickClock, make_cipher, pan_for, setup_batch


def test_mask_pan_first6_last4() -> None:
    assert mask_pan("4111111111111111") == "411111******1111"
    assert mask_pan("4111 1111 1111 1111") == "411111******1111"
    assert mask_pan("123456789012") == "123456**9012"
    assert mask_pan("1234567890123456789") == "123456*********6789"
    for bad in ("12345678901", "41111111111111112222", "4111x11111111111", ""):
        with pytest.raises(InputError) as info:
            mask_pan(bad)
        assert info.value.field == "pan"
        assert bad not in str(info.value) or bad == ""


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_mask_pan_property(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked[:6] == pan[:6] and masked[-4:] == pan[-4:]
    assert set(masked[6:-4]) <= {"*"}
    assert normalize_pan(pan) == pan


def test_seal_open_and_tamper() -> None:
    c = make_cipher()
    sealed = c.seal(b"cardholder record", b"aad-1")
    assert b"cardholder record" not in sealed
    assert c.open(sealed, b"aad-1") == b"cardholder record"
    assert c.seal(b"cardholder record", b"aad-1") != sealed  # fresh nonce
    with pytest.raises(FieldCipherError):
        c.open(sealed, b"aad-2")
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(FieldCipherError):
        c.open(bytes(flipped), b"aad-1")
    other = make_cipher("other keys")
    with pytest.raises(FieldCipherError):
        other.open(sealed, b"aad-1")  # same key id, other key: tag fails
    renamed = SoftFieldCipher(FieldKeys.generate("rotated-2", SeededRandom(1)))
    with pytest.raises(FieldCipherError, match="another key"):
        renamed.open(sealed, b"aad-1")
    with pytest.raises(FieldCipherError, match="format"):
        c.open(b"\x02" + sealed[1:], b"aad-1")


def test_digest_is_keyed_and_deterministic() -> None:
    a, b = make_cipher("a"), make_cipher("b")
    assert pan_digest(a, "4111111111111111") == pan_digest(a, "4111 1111 1111 1111")
    assert pan_digest(a, "4111111111111111") != pan_digest(b, "4111111111111111")
    assert len(pan_digest(a, "4111111111111111")) == 32
    assert a.digest("pan", b"1") != a.digest("other", b"1")


def test_keys_are_redacted() -> None:
    keys = FieldKeys.generate("k1", SeededRandom(7))
    raw = keys.enc_key.reveal()
    assert raw.hex() not in repr(keys) and "redacted" in repr(keys)
    assert raw.hex() not in repr(SoftFieldCipher(keys))
    with pytest.raises(ValueError):
        FieldKeys("k", SecretBytes(b"1" * 32), SecretBytes(b"1" * 32))
    with pytest.raises(ValueError):
        FieldKeys("k", SecretBytes(b"1" * 16), SecretBytes(b"2" * 32))
    assert "4111" not in repr(repo.JobRecord("R1", "4111111111111111", b"x"))


def test_sqlite_file_never_holds_a_clear_pan(tmp_path: Path) -> None:
    """Import, run and report a batch; then no database byte spells a PAN."""
    path = tmp_path / "prod.sqlite3"
    upgrade(f"sqlite:///{path}")
    db = Database.open(f"sqlite:///{path}", clock=TickClock())
    cipher = make_cipher()
    n = 40
    try:
        staff = Staff(db)
        batch_id = setup_batch(db, staff, cipher, n, n + 20)
        for i in range(n + 20):
            with db.transaction() as s:
                att = repo.begin_attempt(s, batch_id, "M1", when=db.now())
                if att is None:
                    break
                repo.record_station(s, att, "perso", True, when=db.now(), detail={"apdus": 12})
                if i % 7 == 3:  # reject some cards: spoiled chips, remakes
                    repo.reject(s, att, station="qc", reason="vision mismatch", when=db.now())
                else:
                    repo.mark_good(s, att, when=db.now())
        with db.reader() as s:
            assert repo.progress(s, batch_id).done
            report = repo.chip_report(s, batch_id)
            rejected = sum(1 for r in report if r.reason)
            assert rejected > 0 and len(report) == n + rejected
        # the write-ahead log still holds recent pages: search it as well
        blobs = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("prod.sqlite3")]
        assert any(len(b) > 0 for b in blobs)
        for i in range(n):
            pan = pan_for(i).encode()
            assert all(pan not in blob for blob in blobs), i
            assert all(pan.decode().encode("utf-16-le") not in blob for blob in blobs)
        assert any(b"400000******0000" in blob for blob in blobs)  # masked form is there
    finally:
        db.dispose()
    blob = path.read_bytes()  # after the final checkpoint too
    assert all(pan_for(i).encode() not in blob for i in range(n))
    assert FAST_SCRYPT.n < 2**10
