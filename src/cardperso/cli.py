"""The ``cardperso`` command line: thin - parse, call one use case, print, map
errors to exit codes (DESIGN.md §3, §6)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

import cardperso.line.cli_serve  # noqa: F401 - registers `card serve` on card_app
from cardperso.cli_common import KEYSTORE, PASSPHRASE_ENV, default_operator, run_step, secret
from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError
from cardperso.hsm.api import KeyAlgorithm, KeyUsage
from cardperso.lettershop.cli import lettershop_app
from cardperso.line.cli_commands import batch_app, card_app, demo_command, stock_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
hsm_app = typer.Typer(no_args_is_help=True, help="The security module: keystore and audit log.")
keys_app = typer.Typer(no_args_is_help=True, help="Keys in the security module.")
app.add_typer(hsm_app, name="hsm")
app.add_typer(keys_app, name="keys")

OPERATOR = typer.Option(default_operator(), "--operator", help="who runs this (for the audit)")


def _passphrase(confirm: bool = False) -> SecretStr:
    """The keystore passphrase (or token PIN) from $CARDPERSO_HSM_PASSPHRASE or a prompt."""
    return secret(PASSPHRASE_ENV, "Keystore passphrase", confirm=confirm)


@app.callback()
def main() -> None:
    """cardperso: smart-card personalization bureau production system."""


@app.command("card-demo")
def card_demo(seed: int = typer.Option(2026, help="seed for the simulated card")) -> None:
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
    audit = run_step(lambda: init_keystore(keystore, passphrase, operator, scrypt_n=2**scrypt_cost))
    typer.echo(f"keystore {keystore} created; audit log {audit}")


@hsm_app.command("verify-audit")
def hsm_verify_audit(keystore: Path = KEYSTORE) -> None:
    """Check the audit log's hash chain record by record."""
    from cardperso.keys_usecases import verify_audit

    report = run_step(lambda: verify_audit(keystore))
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

    handle = run_step(
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
    handles = run_step(lambda: list_keys(keystore, passphrase, operator))
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


issuer_app = typer.Typer(no_args_is_help=True, help="Issuer data files.")
profile_app = typer.Typer(no_args_is_help=True, help="Card product profiles.")
app.add_typer(issuer_app, name="issuer")
app.add_typer(profile_app, name="profile")


@issuer_app.command("generate")
def issuer_generate(
    out: Annotated[Path, typer.Argument(help="file to write (.csv or .jsonl)")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="built-in name or YAML path")] = (
        "debit"
    ),
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="number of records")] = 1000,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 2026,
    fmt: Annotated[str | None, typer.Option("--format", help="csv or jsonl (default: suffix)")] = (
        None
    ),
    issuer: Annotated[str, typer.Option(help="issuer id written in the header")] = "ACME-ISSUER",
    batch_id: Annotated[str | None, typer.Option(help="batch id (default: PROFILE-SEED)")] = None,
    today: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="expiries count from this day")
    ] = None,
    envelope: Annotated[
        bool,
        typer.Option(
            "--envelope",
            help="write the file inside an encrypted envelope: encrypted under "
            "--transport-key and MACed under --mac-key in the HSM (a fresh IV each time)",
        ),
    ] = False,
    transport_key: Annotated[
        str | None, typer.Option("--transport-key", help="--envelope: TRANSPORT key label")
    ] = None,
    mac_key: Annotated[
        str | None, typer.Option("--mac-key", help="--envelope: MAC key label")
    ] = None,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Write a synthetic issuer file (realistic names and addresses) for a card product,
    plain or in an encrypted envelope (keystore passphrase: $CARDPERSO_HSM_PASSPHRASE
    or a prompt)."""
    from cardperso.dataprep.usecases import (
        GeneratedEnvelope,
        generate_issuer_envelope,
        generate_issuer_file,
    )

    day = today.date() if today else date.today()
    if not envelope:
        if transport_key or mac_key:
            typer.echo("error: --transport-key and --mac-key go with --envelope", err=True)
            raise typer.Exit(2)
        g = run_step(
            lambda: generate_issuer_file(
                profile, out, count, seed, today=day, fmt=fmt, issuer=issuer, batch_id=batch_id
            )
        )
        typer.echo(
            f"wrote {g.records} {g.header.profile} records ({g.format}, "
            f"{g.bytes_written} bytes, batch {g.header.batch_id}) to {out}"
        )
        return
    if not transport_key or not mac_key:
        typer.echo("error: --envelope needs --transport-key and --mac-key", err=True)
        raise typer.Exit(2)
    passphrase = _passphrase()

    def write() -> GeneratedEnvelope:
        from cardperso.hsm.backends import open_hsm

        hsm = open_hsm(keystore, passphrase, operator=operator)
        try:
            return generate_issuer_envelope(
                profile,
                out,
                count,
                seed,
                today=day,
                hsm=hsm,
                transport_key=transport_key,
                mac_key=mac_key,
                fmt=fmt,
                issuer=issuer,
                batch_id=batch_id,
                operator=operator,
            )
        finally:
            hsm.close()

    e = run_step(write)
    g = e.inner
    typer.echo(
        f"wrote {g.records} {g.header.profile} records ({g.format}, "
        f"{g.bytes_written} bytes, batch {g.header.batch_id}) to {out} in an envelope "
        f"({e.bytes_written} bytes, {transport_key} / {mac_key})"
    )


@profile_app.command("check")
def profile_check(
    profile: Annotated[
        str, typer.Argument(help="YAML path or built-in name: debit, sim, employee")
    ],
) -> None:
    """Validate a card product profile and print what it describes."""
    from cardperso.dataprep.usecases import check_profile

    for line in run_step(lambda: check_profile(profile)).lines:
        typer.echo(line)


app.add_typer(batch_app, name="batch")
app.add_typer(stock_app, name="stock")
app.add_typer(card_app, name="card")
app.add_typer(lettershop_app, name="lettershop")
app.command("demo")(demo_command)


if __name__ == "__main__":
    app()
