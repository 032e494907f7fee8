"""The ``cardperso`` command line: thin - parse, call one use case, print, map
errors to exit codes (DESIGN.md §3, §6)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError
from cardperso.hsm.api import KeyAlgorithm, KeyUsage

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
hsm_app = typer.Typer(no_args_is_help=True, help="The security module: keystore and audit log.")
keys_app = typer.Typer(no_args_is_help=True, help="Keys in the security module.")
app.add_typer(hsm_app, name="hsm")
app.add_typer(keys_app, name="keys")

_T = TypeVar("_T")
PASSPHRASE_ENV = "CARDPERSO_HSM_PASSPHRASE"  # noqa: S105 - a variable name


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


KEYSTORE = typer.Option(
    Path("cardperso.keystore"), "--keystore", envvar="CARDPERSO_KEYSTORE", help="keystore file"
)
OPERATOR = typer.Option(_default_operator(), "--operator", help="who runs this (for the audit)")


def _run(step: Callable[[], _T]) -> _T:
    """Run one use case; a CardpersoError becomes one line on stderr and its exit code."""
    try:
        return step()
    except CardpersoError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def _passphrase(confirm: bool = False) -> SecretStr:
    """The keystore passphrase from $CARDPERSO_HSM_PASSPHRASE or a prompt without echo."""
    text = os.environ.get(PASSPHRASE_ENV)
    if not text:
        text = typer.prompt("Keystore passphrase", hide_input=True, confirmation_prompt=confirm)
    return SecretStr(text)


@app.callback()
def main() -> None:
    """cardperso: smart-card personalization bureau production system."""


@app.command()
def demo(seed: int = typer.Option(2026, help="seed for the simulated card")) -> None:
    """Scripted session against one simulated card: APDU trace and modeled time."""
    from cardperso.demo import run_card_demo

    try:
        result = run_card_demo(typer.echo, seed)
    except CardpersoError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    if result.failures:
        raise typer.Exit(1)


@hsm_app.command("init")
def hsm_init(
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
    scrypt_cost: int = typer.Option(15, min=10, max=20, help="scrypt cost: N = 2**cost"),
) -> None:
    """Create an empty keystore (encrypted under a passphrase) and its audit log."""
    from cardperso.keys_usecases import init_keystore

    passphrase = _passphrase(confirm=True)
    audit = _run(lambda: init_keystore(keystore, passphrase, operator, scrypt_n=2**scrypt_cost))
    typer.echo(f"keystore {keystore} created; audit log {audit}")


@hsm_app.command("verify-audit")
def hsm_verify_audit(keystore: Path = KEYSTORE) -> None:
    """Check the audit log's hash chain record by record."""
    from cardperso.keys_usecases import verify_audit

    report = _run(lambda: verify_audit(keystore))
    typer.echo(f"audit chain intact: {report.count} records, head {report.head}")


@keys_app.command("ceremony")
def keys_ceremony(
    label: Annotated[str, typer.Option(help="label of the new key")],
    algorithm: Annotated[KeyAlgorithm, typer.Option(help="key algorithm")],
    usage: Annotated[KeyUsage, typer.Option(help="key usage")],
    components: int = typer.Option(2, help="number of components (2 or 3)"),
    expected_kcv: str | None = typer.Option(None, help="KCV the combined key must have"),
    exportable: bool = typer.Option(False, help="allow export under a KEK"),
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Import a key as components from separate custodians (dual control)."""
    from cardperso.keys_usecases import ComponentEntry, parse_component, run_ceremony

    passphrase = _passphrase()

    def read_component(i: int) -> ComponentEntry:
        custodian = typer.prompt(f"Custodian {i}, your name")
        value = typer.prompt(f"Custodian {i}, your component (hex, not shown)", hide_input=True)
        kcv = typer.prompt(f"Custodian {i}, the KCV on your component sheet")
        return ComponentEntry(custodian, parse_component(value), kcv)

    def accepted(i: int, custodian: str, kcv: str) -> None:
        typer.echo(f"component {i} from {custodian}: KCV {kcv} matches")

    handle = _run(
        lambda: run_ceremony(
            keystore,
            passphrase,
            operator,
            label=label,
            algorithm=algorithm,
            usage=usage,
            components=components,
            read_component=read_component,
            component_accepted=accepted,
            expected_kcv=expected_kcv,
            exportable=exportable,
        )
    )
    typer.echo(f"key {handle.label} stored: {handle.algorithm} {handle.usage} KCV {handle.kcv}")


@keys_app.command("list")
def keys_list(keystore: Path = KEYSTORE, operator: str = OPERATOR) -> None:
    """Labels, algorithms, usages and KCVs of the stored keys (never key bytes)."""
    from cardperso.keys_usecases import list_keys

    passphrase = _passphrase()
    handles = _run(lambda: list_keys(keystore, passphrase, operator))
    rows = [("LABEL", "ALGORITHM", "USAGE", "KCV", "VERSION", "EXPORTABLE")]
    rows += [
        (
            h.label,
            h.algorithm.value,
            h.usage.value,
            h.kcv,
            h.version,
            "yes" if h.exportable else "no",
        )
        for h in handles
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not handles:
        typer.echo("(no keys)")


if __name__ == "__main__":
    app()
