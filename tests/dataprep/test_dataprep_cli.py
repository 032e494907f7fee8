"""``cardperso issuer generate`` (plain and ``--envelope``) and ``cardperso profile check``
through the real CLI.

Skipped until the two commands are registered in ``cardperso.cli``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dataprep_samples import TODAY
from prep_kit import PASSPHRASE, Keystore, make_keystore
from typer.testing import CliRunner, Result

from cardperso import cli
from cardperso.cli import PASSPHRASE_ENV
from cardperso.dataprep.batch import open_issuer_file, prepare_file
from cardperso.dataprep.envelope import ENVELOPE_MAGIC, open_envelope
from cardperso.dataprep.issuer_file import scan_issuer_file
from cardperso.errors import InputError
from cardperso.hsm import Role
from cardperso.profiles.loader import _builtin_dir

_groups = {g.name for g in cli.app.registered_groups}
pytestmark = pytest.mark.skipif(
    not {"issuer", "profile"} <= _groups, reason="issuer/profile commands not in cli.py yet"
)

runner = CliRunner()


def test_issuer_generate_then_intake_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    args = ["issuer", "generate", str(out), "-p", "sim", "-n", "20", "--today", "2026-03-15"]
    res = runner.invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("wrote 20 sim records (jsonl, ")
    assert scan_issuer_file(out, today=TODAY).accepted == 20
    again = tmp_path / "again.jsonl"
    runner.invoke(cli.app, [*args[:2], str(again), *args[3:]])
    assert again.read_bytes() == out.read_bytes()


def test_issuer_generate_errors_exit_with_config_code(tmp_path: Path) -> None:
    res = runner.invoke(cli.app, ["issuer", "generate", str(tmp_path / "x.csv"), "-p", "credit"])
    assert res.exit_code == 2
    assert "unknown profile 'credit'" in res.output


def test_profile_check(tmp_path: Path) -> None:
    res = runner.invoke(cli.app, ["profile", "check", "debit"])
    assert res.exit_code == 0
    assert (
        res.output.splitlines()[0]
        == "profile debit v1: Payment debit card (chip and magnetic stripe)"
    )
    bad = tmp_path / "bad.yaml"
    text = (_builtin_dir() / "debit.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("size: 64", "size: 0"), encoding="utf-8")
    res = runner.invoke(cli.app, ["profile", "check", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml: files[2].size: Input should be greater than or equal to 1" in res.output


# -- issuer generate --envelope ---------------------------------------------------------

ENVELOPE_KEYS = ["--transport-key", "TRANSPORT.ACME", "--mac-key", "MAC.ACME"]
BAD_MAC = (
    "debit.env, field 'mac': bad MAC: the envelope is not what the issuer sent, "
    "or not under this MAC key"
)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


def _generate(keystore: Keystore, out: Path, *extra: str) -> Result:
    args = ["issuer", "generate", str(out), "-n", "30", "--seed", "7", "--today", "2026-03-15"]
    args += ["--batch-id", "ENV-CLI", "--keystore", str(keystore.path), "--operator", "issuer"]
    return runner.invoke(cli.app, [*args, *extra], env={PASSPHRASE_ENV: PASSPHRASE.reveal()})


def test_issuer_generate_envelope_then_import_reads_it_back(
    keystore: Keystore, tmp_path: Path
) -> None:
    env, plain = tmp_path / "debit.env", tmp_path / "debit.csv"
    res = _generate(keystore, env, "--envelope", *ENVELOPE_KEYS)
    assert res.exit_code == 0, res.output
    assert _generate(keystore, plain).exit_code == 0
    assert res.output.startswith(f"wrote 30 debit records (csv, {plain.stat().st_size} bytes, ")
    assert f"to {env} in an envelope ({env.stat().st_size} bytes, TRANSPORT.ACME / MAC.ACME)" in (
        res.output
    )
    data = env.read_bytes()
    assert data.startswith(ENVELOPE_MAGIC)
    first_record = plain.read_bytes().splitlines()[2]
    assert first_record.split(b",")[0] not in data  # no PAN in clear
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debit.csv", "debit.env"]
    # the HSM opens it: MAC first, then the very file the generator writes for this seed
    hsm = keystore.open()
    with hsm.session(Role.DATAPREP, "bureau") as s:
        opened = open_envelope(env, s)
        assert opened.header.batch_id == "ENV-CLI" and opened.header.record_count == 30
        assert opened.stream.read() == plain.read_bytes()
        opened.stream.close()
        with open_issuer_file(env, s, today=TODAY) as reader:
            assert (reader.name, reader.header.batch_id) == ("debit.env", "ENV-CLI")
            assert len(list(reader)) == 30
    hsm.close()
    # and data preparation imports it like the plain file
    a = prepare_file(env, tmp_path / "a", hsm=keystore.open, today=TODAY, workers=0)
    b = prepare_file(plain, tmp_path / "b", hsm=keystore.open, today=TODAY, workers=0)
    assert a.prepared == 30 and a.cards_sha256 == b.cards_sha256


def test_a_tampered_envelope_body_is_refused(keystore: Keystore, tmp_path: Path) -> None:
    env = tmp_path / "debit.env"
    assert _generate(keystore, env, "--envelope", *ENVELOPE_KEYS).exit_code == 0
    data = bytearray(env.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the body: the header line is in the first 300 bytes
    env.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        prepare_file(env, out, hsm=keystore.open, today=TODAY, workers=0)
    assert str(info.value) == BAD_MAC
    assert (info.value.file, info.value.field) == ("debit.env", "mac")
    assert not out.exists()


def test_issuer_generate_envelope_option_errors(keystore: Keystore, tmp_path: Path) -> None:
    env = tmp_path / "debit.env"
    res = _generate(keystore, env, "--envelope", "--transport-key", "TRANSPORT.ACME")
    assert (res.exit_code, res.output) == (
        2,
        "error: --envelope needs --transport-key and --mac-key\n",
    )
    res = _generate(keystore, env, *ENVELOPE_KEYS)
    assert (res.exit_code, res.output) == (
        2,
        "error: --transport-key and --mac-key go with --envelope\n",
    )
    res = _generate(
        keystore, env, "--envelope", "--transport-key", "TRANSPORT.NONE", "--mac-key", "MAC.ACME"
    )
    assert (res.exit_code, res.output) == (
        5,
        "error: HSM get_key: no key labelled 'TRANSPORT.NONE'\n",
    )
    res = _generate(
        keystore, env, "--envelope", "--transport-key", "MAC.ACME", "--mac-key", "MAC.ACME"
    )
    assert (res.exit_code, res.output) == (
        5,
        "error: HSM encrypt_data: key 'MAC.ACME' has usage MAC; this needs TRANSPORT\n",
    )
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file
