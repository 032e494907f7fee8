"""The ``cardperso batch`` and ``cardperso stock`` commands and ``cardperso demo``:
thin, like ``cli.py``.

Each command parses its options, opens the database and the HSM, calls one use case
(:mod:`cardperso.line.usecases`) and prints; a :class:`~cardperso.errors.CardpersoError`
becomes one line on stderr and its exit code. Operators authenticate with
``--operator`` and the password from ``$CARDPERSO_OPERATOR_PASSWORD`` or a prompt
without echo; the keystore passphrase comes from ``$CARDPERSO_HSM_PASSPHRASE`` or a
prompt. ``batch run`` shows a live display: per-station counts, rate and ETA.

Simulated cards that were initialized in the initialization room (``stock
initialize``) are kept in the card vault (``--vault``, a folder in the run's work
folder, :mod:`cardperso.line.vault`); ``batch run --stock-kind pre_initialized``
feeds them from there.

Wire into ``cli.py``::

    from cardperso.line.cli_commands import batch_app, demo_command, stock_app
    app.add_typer(batch_app, name="batch"); app.command("demo")(demo_command)
    app.add_typer(stock_app, name="stock")
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cardperso.cli_common import (
    DB_URL,
    KEYSTORE,
    bureau,
    default_operator,
    login_operator,
    run_step,
)
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig, LineProgress, RunResult
from cardperso.line.vault import CardVault
from cardperso.production.db import Database, default_url
from cardperso.production.models import StockKind
from cardperso.profiles.schema import LoadingMethod

__all__ = ["batch_app", "card_app", "demo_command", "progress_table", "stock_app"]

card_app = typer.Typer(no_args_is_help=True, help="Single cards: depersonalization.")

batch_app = typer.Typer(no_args_is_help=True, help="Batches: import, run, resume, status, report.")
stock_app = typer.Typer(
    no_args_is_help=True, help="Card stock: the initialization room (blank -> pre-initialized)."
)

OPERATOR = typer.Option(default_operator(), "--operator", help="operator name (authenticated)")
VAULT = typer.Option(
    Path("card-vault"),
    "--vault",
    envvar="CARDPERSO_CARD_VAULT",
    help="folder of the simulated card vault: initialized cards kept between runs "
    "(holds their keys, as the cards do; owner-only files)",
)


def progress_table(p: LineProgress) -> Group:
    """The live display of a running batch: per-station counts, then rate and ETA
    on their own line (a table caption would wrap to the table's narrow width)."""
    t = Table()
    t.add_column("station")
    t.add_column("passed", justify="right")
    for name in ("feeder", "init", "perso", "chip_check", "magstripe", "visual", "qc"):
        t.add_row(name, str(p.stations.get(name, 0)))
    eta = f"{p.eta_s:.0f} s" if p.eta_s is not None else "-"
    status = Text(
        f"cards {p.cards}  good {p.good}  rejected {p.rejected}  remakes {p.remakes}\n"
        f"records {p.good_jobs}/{p.total_jobs}  in flight {p.in_flight}  "
        f"{p.rate_per_s:.1f} cards/s  ETA {eta}\nmodeled {p.modeled_cards_per_hour:.0f} cards/h "
        f"(limited by {p.limiting_station})\n"
    )
    return Group(t, status)


def _print_run(result: RunResult) -> None:
    model = result.modeled()
    typer.echo(
        f"{result.cards} cards: {result.good} good, {sum(result.rejected.values())} rejected, "
        f"{result.remakes} remakes; batch {'done' if result.batch_done else 'not done'}"
    )
    for reason, n in result.rejected.most_common(8):
        typer.echo(f"  reject bin {n:5d}  {reason}")
    typer.echo(
        f"modeled {model.cards_per_hour:.0f} cards/hour with {result.modules} modules "
        f"(limited by {model.limiting_station}); host CPU {result.host_cpu_ms_per_card():.2f} "
        f"ms/card; wall {result.wall_s:.1f} s"
    )
    if result.stopped:
        typer.echo(f"line stopped: {result.stopped}", err=True)


@batch_app.command("import")
def batch_import(
    file: Annotated[Path, typer.Argument(help="issuer file (.csv or .jsonl)")],
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Validate, prepare and store an issuer file as one batch (whole or nothing)."""
    from cardperso.line.usecases import import_batch

    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        today = datetime.now(UTC).date()
        r = run_step(lambda: import_batch(db, hsm, file, by=who, today=today))
        typer.echo(f"batch {r.batch_id} ({r.reference}, {r.profile}): {r.records} records imported")


def _line_run(
    batch_id: int,
    db_url: str | None,
    keystore: Path,
    operator: str,
    modules: int,
    stock_seed: str,
    stock_kind: StockKind = StockKind.BLANK,
    vault: Path | None = None,
) -> None:
    from cardperso.line.usecases import run_batch

    feeder = SimulatedFeeder(stock_seed, vault=CardVault(vault) if vault is not None else None)
    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        console = Console()
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            result = run_step(
                lambda: run_batch(
                    db,
                    hsm,
                    batch_id,
                    by=who,
                    feeder=feeder,
                    config=LineConfig(modules=modules, stock_kind=stock_kind),
                    progress=lambda p: live.update(progress_table(p)),
                )
            )
        _print_run(result)
        if result.stopped:
            raise typer.Exit(6)


MODULES = typer.Option(4, "--modules", "-m", min=1, max=64, help="chip-encoding modules")
STOCK = typer.Option("stock", "--stock-seed", help="seed of the simulated card stock")
STOCK_KIND = typer.Option(
    StockKind.BLANK,
    "--stock-kind",
    help="blank stock (initialized in the modules) or pre_initialized stock of the "
    "batch's product (from the initialization room)",
)


@batch_app.command("run")
def batch_run(
    batch_id: Annotated[int, typer.Argument(help="batch id")],
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
    modules: int = MODULES,
    stock_seed: str = STOCK,
    stock_kind: StockKind = STOCK_KIND,
    vault: Path = VAULT,
) -> None:
    """Start a batch and run the line until no job is pending (live progress)."""
    _line_run(batch_id, db_url, keystore, operator, modules, stock_seed, stock_kind, vault)


@batch_app.command("resume")
def batch_resume(
    batch_id: Annotated[int, typer.Argument(help="batch id")],
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
    modules: int = MODULES,
    stock_seed: str = STOCK,
    stock_kind: StockKind = STOCK_KIND,
    vault: Path = VAULT,
) -> None:
    """Resume a paused or crashed batch: cards left in modules are rejected and remade."""
    _line_run(batch_id, db_url, keystore, operator, modules, stock_seed, stock_kind, vault)


@batch_app.command("receive-stock")
def batch_receive_stock(
    count: Annotated[int, typer.Argument(min=1, help="number of blank cards")],
    lot: Annotated[str, typer.Option("--lot", help="delivery lot")] = "LOT-1",
    start: Annotated[int, typer.Option("--start", min=0, help="first card of the run")] = 0,
    stock_seed: str = STOCK,
    db_url: str | None = DB_URL,
    operator: str = OPERATOR,
) -> None:
    """Book blank cards of the simulated stock run into the feeder stock."""
    from cardperso.line.feeder import stock_serials
    from cardperso.line.usecases import receive_stock

    db = Database.open(db_url or default_url())
    try:
        who = login_operator(db, operator)
        serials = stock_serials(stock_seed, start, count)
        n = run_step(lambda: receive_stock(db, serials, by=who, lot=lot))
    finally:
        db.dispose()
    typer.echo(f"{n} blank cards booked (lot {lot})")


@batch_app.command("status")
def batch_status_cmd(
    batch_id: Annotated[int, typer.Argument(help="batch id")],
    db_url: str | None = DB_URL,
) -> None:
    """Jobs, attempts and chips of a batch (counts only)."""
    from cardperso.line.usecases import batch_status

    db = Database.open(db_url or default_url())
    try:
        p = run_step(lambda: batch_status(db, batch_id))
    finally:
        db.dispose()
    jobs = ", ".join(f"{s.value} {n}" for s, n in p.jobs.items() if n)
    atts = ", ".join(f"{o.value} {n}" for o, n in p.attempts.items() if n)
    typer.echo(f"batch {batch_id}: jobs {jobs or 'none'}; attempts {atts or 'none'}")
    typer.echo(f"chips: {p.chips_good} used good, {p.chips_spoiled} spoiled")


@batch_app.command("report")
def batch_report_cmd(
    batch_id: Annotated[int, typer.Argument(help="batch id")],
    out: Annotated[Path, typer.Option("--out", help="folder for the report files")] = Path(
        "reports"
    ),
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Batch summary, chip usage report and response data, written to --out."""
    from cardperso.line.usecases import batch_report

    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        files = run_step(lambda: batch_report(db, hsm, batch_id, out, by=who))
    for line in files.summary.lines():
        typer.echo(line)
    typer.echo(f"summary {files.summary_json}")
    typer.echo(f"chip report {files.chip_report}")
    if files.response_data:
        typer.echo(f"response data {files.response_data}")


@stock_app.command("initialize")
def stock_initialize(
    product: Annotated[str, typer.Argument(help="profile: a built-in name or a YAML file")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="cards to initialize")] = 1,
    method: Annotated[
        LoadingMethod | None,
        typer.Option("--method", help="logical or image (default: the profile's loading.method)"),
    ] = None,
    image_source: Annotated[
        str,
        typer.Option(
            "--image-source",
            help="image mode: vendor (the card vendor's offline builder) or golden "
            "(read out of a golden card made from the first blank card, then terminated)",
        ),
    ] = "vendor",
    station: Annotated[str, typer.Option("--station", help="initialization station id")] = "R1",
    stock_seed: str = STOCK,
    vault: Path = VAULT,
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """The initialization room: blank stock cards in, pre-initialized stock of one
    product out (an init operator only; HSM role initialization only)."""
    from cardperso.line.initroom import InitRoomConfig, initialize_stock
    from cardperso.profiles.loader import resolve_profile

    if image_source not in ("vendor", "golden"):
        typer.echo("error: --image-source is vendor or golden", err=True)
        raise typer.Exit(2)
    profile = run_step(lambda: resolve_profile(product))
    feeder = SimulatedFeeder(stock_seed, vault=CardVault(vault))
    config = InitRoomConfig(
        station=station,
        method=method,
        image_source="golden" if image_source == "golden" else "vendor",
    )
    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        r = run_step(
            lambda: initialize_stock(
                db, hsm, profile, count, by=who, feeder=feeder, shelf=feeder, config=config
            )
        )
    how = r.method if r.image_source is None else f"{r.method} ({r.image_source} image)"
    typer.echo(
        f"{len(r.initialized)} cards initialized by {how} as pre-initialized "
        f"{r.product} v{r.version} stock; {len(r.spoiled)} spoiled"
    )
    if r.image_sha256:
        typer.echo(f"image SHA-256 {r.image_sha256}")
    if r.golden:
        typer.echo(f"golden card {r.golden}: read out once, terminated, spoiled")
    if r.recovered:
        typer.echo(f"{r.recovered} cards left claimed by an interrupted run were spoiled")
    for serial, reason in list(r.spoiled.items())[:8]:
        typer.echo(f"  spoiled {serial}  {reason}")
    typer.echo(f"modeled {r.mean_chip_s:.3f} s per card at the chip; vault {vault}")
    if r.stopped:
        typer.echo(f"initialization stopped: {r.stopped}", err=True)
        raise typer.Exit(6)


@card_app.command("depersonalize")
def card_depersonalize(
    serial: Annotated[str, typer.Argument(help="chip serial (hex) of a card in the vault")],
    product: Annotated[
        str, typer.Option("--product", help="profile: a built-in name or a YAML file")
    ],
    stock_seed: str = STOCK,
    vault: Path = VAULT,
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Depersonalize one card back to INITIALIZED (a supervisor; only for a product
    whose profile allows it, after its admin key is proven through the HSM)."""
    from cardperso.line.deperso import depersonalize_card
    from cardperso.profiles.loader import resolve_profile

    profile = run_step(lambda: resolve_profile(product))
    cards = CardVault(vault)
    serial = serial.strip().upper()
    if not cards.holds(serial):
        typer.echo(f"error: the vault {vault} holds no card {serial}", err=True)
        raise typer.Exit(2)
    feeder = SimulatedFeeder(stock_seed, vault=cards)
    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        reader = run_step(lambda: feeder.insert(serial, "DEPERSO"))
        r = run_step(lambda: depersonalize_card(db, hsm, profile, reader, by=who))
        feeder.shelve(serial)
    typer.echo(
        f"card {r.serial} ({profile.id}): {r.before} -> initialized; "
        f"modeled {r.modeled_s:.3f} s; back in the vault"
    )


def demo_command(
    workdir: Annotated[Path, typer.Option("--dir", help="folder for the demo's files")] = Path(
        "cardperso-demo"
    ),
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="records")] = 10_000,
    modules: Annotated[int, typer.Option("--modules", "-m", min=1, max=64)] = 8,
    seed: Annotated[int, typer.Option(help="same seed, same batch")] = 2026,
) -> None:
    """generate -> import -> run -> report: synthetic debit cards on SQLite, the soft HSM
    and simulated cards, ending with a summary and the paths of its outputs."""
    from cardperso.line.usecases import run_demo

    console = Console()
    with Live(console=console, refresh_per_second=4) as live:
        r = run_step(
            lambda: run_demo(
                workdir,
                count=count,
                modules=modules,
                seed=seed,
                log=lambda m: live.console.print(m),
                progress=lambda p: live.update(progress_table(p)),
            )
        )
    _print_run(r.run)
    for line in r.report.summary.lines():
        typer.echo(line)
    typer.echo("outputs:")
    typer.echo(f"  issuer file     {r.issuer_file}")
    typer.echo(f"  database        {r.database}")
    typer.echo(f"  keystore        {r.keystore} (+ .audit.jsonl)")
    typer.echo(f"  summary         {r.report.summary_json}")
    typer.echo(f"  chip report     {r.report.chip_report}")
    if r.report.response_data:
        typer.echo(f"  response data   {r.report.response_data}")
    if r.faces:
        typer.echo(f"  card faces      {r.faces[0].parent} ({len(r.faces)} PNG files)")
    if r.report.summary.problems or not r.run.batch_done:
        raise typer.Exit(1)
