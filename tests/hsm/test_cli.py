"""`cardperso hsm ...` and `cardperso keys ...` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardperso.cli import app
from cardperso.hsm import KeyAlgorithm
from cardperso.hsm.ceremony import key_check_value

from .support import H, watch_key

PASS = "cli test passphrase"
KEY = H("0123456789ABCDEFFEDCBA9876543210")
PART1 = H("1C587F1C13EC5104B640A2FE34CB8A9D")
PART2 = bytes(a ^ b for a, b in zip(KEY, PART1, strict=True))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keystore(tmp_path: Path, runner: CliRunner) -> Path:
    """A fresh keystore made by `hsm init` (with a fast scrypt cost for tests)."""
    path = tmp_path / "bureau.cpks"
    result = runner.invoke(
        app,
        ["hsm", "init", "--keystore", str(path), "--operator", "sam", "--scrypt-cost", "10"],
        input=f"{PASS}\n{PASS}\n",
    )
    assert result.exit_code == 0, result.output
    assert "created" in result.output and PASS not in result.output
    return path


def ceremony_input(parts: list[bytes], names: list[str], kcvs: list[str] | None = None) -> str:
    kcvs = kcvs or [key_check_value(KeyAlgorithm.TDES_2KEY, p) for p in parts]
    lines = [PASS]
    for name, part, kcv in zip(names, parts, kcvs, strict=True):
        lines += [name, part.hex(), kcv]
    return "\n".join(lines) + "\n"


CEREMONY = ["keys", "ceremony", "--label", "zmk-1", "--algorithm", "TDES-2KEY", "--usage", "KEK"]


def test_init_ceremony_list(runner: CliRunner, keystore: Path) -> None:
    for p in (KEY, PART1, PART2):
        watch_key(p)
    result = runner.invoke(
        app,
        [*CEREMONY, "--keystore", str(keystore), "--expected-kcv", "08D7B4", "--operator", "sam"],
        input=ceremony_input([PART1, PART2], ["alice", "bob"]),
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "component 1 from alice: KCV" in out and "component 2 from bob" in out
    assert "key zmk-1 stored: TDES-2KEY KEK KCV 08D7B4" in out
    for secret in (PART1, PART2, KEY):  # components are read without echo
        assert secret.hex() not in out.lower()
    listing = runner.invoke(app, ["keys", "list", "--keystore", str(keystore)], input=PASS + "\n")
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if line.startswith("zmk-1"))
    assert row.split() == ["zmk-1", "TDES-2KEY", "KEK", "08D7B4", "00", "no"]
    audit = runner.invoke(app, ["hsm", "verify-audit", "--keystore", str(keystore)])
    assert audit.exit_code == 0 and "audit chain intact" in audit.output


def test_passphrase_from_the_environment(runner: CliRunner, keystore: Path) -> None:
    result = runner.invoke(
        app, ["keys", "list", "--keystore", str(keystore)], env={"CARDPERSO_HSM_PASSPHRASE": PASS}
    )
    assert result.exit_code == 0 and "(no keys)" in result.output


def test_wrong_passphrase_exits_5(runner: CliRunner, keystore: Path) -> None:
    result = runner.invoke(app, ["keys", "list", "--keystore", str(keystore)], input="guess\n")
    assert result.exit_code == 5
    assert "wrong passphrase or damaged file" in result.output


def test_a_wrong_component_kcv_stores_nothing(runner: CliRunner, keystore: Path) -> None:
    result = runner.invoke(
        app,
        [*CEREMONY, "--keystore", str(keystore)],
        input=ceremony_input([PART1, PART2], ["alice", "bob"], ["08D7B4", "000000"]),
    )
    assert result.exit_code == 5
    assert "does not match its KCV" in result.output
    listing = runner.invoke(app, ["keys", "list", "--keystore", str(keystore)], input=PASS + "\n")
    assert "(no keys)" in listing.output


def test_refusals(runner: CliRunner, keystore: Path) -> None:
    dup = runner.invoke(
        app,
        [*CEREMONY, "--keystore", str(keystore)],
        input=ceremony_input([PART1, PART2], ["alice", "alice"]),
    )
    assert dup.exit_code == 5 and "already entered" in dup.output
    one = runner.invoke(app, [*CEREMONY, "--components", "1", "--keystore", str(keystore)],
                        input=PASS + "\n")  # fmt: skip
    assert one.exit_code == 5 and "2 to 3 components" in one.output
    bad_hex = runner.invoke(
        app, [*CEREMONY, "--keystore", str(keystore)], input=f"{PASS}\nalice\nnot hex\n08D7B4\n"
    )
    assert bad_hex.exit_code == 5 and "hexadecimal" in bad_hex.output
    assert "not hex" not in bad_hex.output.replace("alice", "")  # the component is not echoed
    again = runner.invoke(
        app, ["hsm", "init", "--keystore", str(keystore)], input=f"{PASS}\n{PASS}\n"
    )
    assert again.exit_code == 5 and "already exists" in again.output
    weak = runner.invoke(
        app, ["hsm", "init", "--keystore", str(keystore) + "2", "--scrypt-cost", "10"],
        input="short\nshort\n",
    )  # fmt: skip
    assert weak.exit_code == 5 and "at least 10 characters" in weak.output


def test_a_broken_audit_chain_fails_verification(runner: CliRunner, keystore: Path) -> None:
    audit = keystore.with_name(keystore.name + ".audit.jsonl")
    audit.write_text(audit.read_text() + audit.read_text())
    result = runner.invoke(app, ["hsm", "verify-audit", "--keystore", str(keystore)])
    assert result.exit_code == 5 and "record 1" in result.output


def test_demo_is_still_there(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "hsm", "keys"):
        assert command in result.output
