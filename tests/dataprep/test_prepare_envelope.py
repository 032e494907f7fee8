"""The encrypted issuer envelope: MAC checked first, decrypted inside the HSM in pieces,
and the same prepared cards as from the plain file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from prep_kit import Keystore, make_keystore

from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.envelope import (
    ENVELOPE_MAGIC,
    EnvelopeHeader,
    open_envelope,
    write_envelope,
)
from cardperso.dataprep.generator import write_issuer_file
from cardperso.errors import InputError
from cardperso.hsm import Role
from cardperso.profiles.loader import load_builtin

TODAY = date(2026, 3, 15)
IV = bytes(range(16))


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


def header(**changes: object) -> EnvelopeHeader:
    fields: dict[str, object] = dict(
        issuer="ACME-ISSUER", batch_id="ENV-1", profile="debit", profile_version=1,
        record_count=120, transport_key="TRANSPORT.ACME", mac_key="MAC.ACME", iv=IV,
    )  # fmt: skip
    fields.update(changes)
    return EnvelopeHeader(**fields)  # type: ignore[arg-type]


def make(keystore: Keystore, tmp_path: Path, *, segment: int = 1024, **changes: object) -> Path:
    plain = tmp_path / "debit.csv"
    if not plain.exists():
        write_issuer_file(load_builtin("debit"), plain, 120, 8, TODAY, batch_id="ENV-1")
    env = tmp_path / "debit.env"
    hsm = keystore.open("issuer")
    with hsm.session(Role.DATAPREP, "issuer") as s:
        write_envelope(plain, env, s, header(**changes), segment=segment)
    hsm.close()
    return env


def test_an_envelope_prepares_like_the_plain_file(keystore: Keystore, tmp_path: Path) -> None:
    env = make(keystore, tmp_path)
    assert env.read_bytes().startswith(ENVELOPE_MAGIC)
    assert b"ACME" in env.read_bytes()[:400] and b"JUERGEN" not in env.read_bytes()
    a = prepare_file(env, tmp_path / "a", hsm=keystore.open, today=TODAY)
    b = prepare_file(tmp_path / "debit.csv", tmp_path / "b", hsm=keystore.open, today=TODAY)
    assert a.prepared == 120 and a.cards_sha256 == b.cards_sha256
    manifest = json.loads((a.folder / "manifest.json").read_text())
    assert manifest["source"]["name"] == "debit.env"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["header", "body", "mac"])
def test_a_bad_mac_names_the_file_and_nothing_is_decrypted(
    keystore: Keystore, tmp_path: Path, where: str
) -> None:
    env = make(keystore, tmp_path)
    size = env.stat().st_size
    offset = {"header": len(ENVELOPE_MAGIC) + 20, "body": size // 2, "mac": size - 3}[where]
    _flip(env, offset)
    audit = keystore.path.with_name(keystore.path.name + ".audit.jsonl")
    before = len(audit.read_text().splitlines())
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        prepare_file(env, out, hsm=keystore.open, today=TODAY)
    e = info.value
    assert e.file == "debit.env"
    if where == "header":  # the flipped byte may break the JSON before the MAC is reached
        assert e.field is not None or "header" in str(e)
    else:
        assert str(e).startswith("debit.env, field 'mac': bad MAC")
    ops = [json.loads(x)["operation"] for x in audit.read_text().splitlines()[before:]]
    assert "decrypt_data" not in ops
    assert not out.exists()


def test_envelope_faults(keystore: Keystore, tmp_path: Path) -> None:
    env = make(keystore, tmp_path)
    hsm = keystore.open()
    s = hsm.session(Role.DATAPREP, "t")
    cut = tmp_path / "cut.env"
    cut.write_bytes(env.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"cut\.env"):
        open_envelope(cut, s)
    trailing = tmp_path / "trailing.env"
    trailing.write_bytes(env.read_bytes() + b"x")
    with pytest.raises(InputError, match="no MAC, or data after it"):
        open_envelope(trailing, s)
    hsm.close()


def test_the_envelope_must_match_the_file_inside(keystore: Keystore, tmp_path: Path) -> None:
    env = make(keystore, tmp_path, record_count=121)
    with pytest.raises(InputError) as info:
        prepare_file(env, tmp_path / "o", hsm=keystore.open, today=TODAY)
    assert (info.value.file, info.value.field) == ("debit.env", "record_count")


def test_a_key_the_bureau_does_not_hold(keystore: Keystore, tmp_path: Path) -> None:
    env = make(keystore, tmp_path)
    text = env.read_bytes().replace(b'"MAC.ACME"', b'"MAC.OTHE"', 1)
    env.write_bytes(text)
    hsm = keystore.open()
    with pytest.raises(InputError, match="names a key this HSM does not hold"):
        open_envelope(env, hsm.session(Role.DATAPREP, "t"))
    hsm.close()


def test_the_smallest_and_largest_segments(keystore: Keystore, tmp_path: Path) -> None:
    for segment in (32, 65536):
        d = tmp_path / str(segment)
        d.mkdir()
        env = make(keystore, d, segment=segment)
        hsm = keystore.open()
        opened = open_envelope(env, hsm.session(Role.DATAPREP, "t"))
        assert opened.stream.read() == (d / "debit.csv").read_bytes()
        hsm.close()
