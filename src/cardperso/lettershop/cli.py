"""The ``cardperso lettershop`` commands: thin, like ``cli.py``.

``run`` puts a finished batch through the lettershop (carriers, inserter and scale,
PIN mailers printed inside the HSM, test letters, dispatch manifest) as an
authenticated operator; ``config`` prints the settings (defaults, or a file's) as YAML
to start a bureau's own. Options follow ``cardperso batch``: ``--db``, ``--keystore``,
``--operator``; the operator's password comes from ``$CARDPERSO_OPERATOR_PASSWORD`` or
a prompt without echo, the keystore passphrase from ``$CARDPERSO_HSM_PASSPHRASE`` or a
prompt. Errors become one line on stderr and the error's exit code.

Wire into ``cli.py``::

    from cardperso.lettershop.cli import lettershop_app
    app.add_typer(lettershop_app, name="lettershop")
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cardperso.cli_common import (
    DB_URL,
    KEYSTORE,
    bureau,
    default_operator,
    login_operator,
    run_step,
)
from cardperso.lettershop.config import LettershopConfig, TestLetters, dump_config, load_config

__all__ = ["lettershop_app"]

lettershop_app = typer.Typer(
    no_args_is_help=True,
    help="The lettershop: presort, carriers, PIN mailers, inserter, dispatch manifest.",
)

OPERATOR = typer.Option(default_operator(), "--operator", help="operator name (authenticated)")
CONFIG = typer.Option(None, "--config", help="lettershop settings (YAML; default: built in)")


def _settings(
    path: Path | None,
    first_day: datetime | None,
    delay: int | None,
    capacity: int | None,
    tests: int | None,
    region: str | None,
) -> LettershopConfig:
    config = load_config(path)
    changes: dict[str, object] = {}
    if first_day is not None:
        changes["first_day"] = first_day.date()
    if delay is not None:
        changes["mailer_delay_days"] = delay
    if capacity is not None:
        changes["daily_capacity"] = capacity
    if tests is not None or region is not None:
        tl = config.test_letters.model_dump()
        if tests is not None:
            tl["count"] = tests
        if region is not None:
            tl["region"] = region
        changes["test_letters"] = TestLetters.model_validate(tl)
    if not changes:
        return config
    return LettershopConfig.model_validate({**config.model_dump(), **changes})


@lettershop_app.command("run")
def lettershop_run(
    batch_id: Annotated[int, typer.Argument(help="batch id (a finished batch)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the run's output")] = Path(
        "lettershop"
    ),
    config_file: Path | None = CONFIG,
    first_day: Annotated[
        datetime | None,
        typer.Option("--day", formats=["%Y-%m-%d"], help="posting day of the first carriers"),
    ] = None,
    delay: Annotated[
        int | None,
        typer.Option("--mailer-delay", min=1, help="days between a card and its PIN mailer"),
    ] = None,
    capacity: Annotated[
        int | None, typer.Option("--daily-capacity", min=1, help="carriers posted per day")
    ] = None,
    tests: Annotated[
        int | None, typer.Option("--test-letters", min=0, help="test letters before the mailing")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--test-region", help="test letters' region COUNTRY:REGION, e.g. DE:80"),
    ] = None,
    db_url: str | None = DB_URL,
    keystore: Path = KEYSTORE,
    operator: str = OPERATOR,
) -> None:
    """Carriers in postal order, inserter and scale, PIN mailers printed inside the HSM
    (posted days after their cards), test letters and the dispatch manifest."""
    from pydantic import ValidationError

    from cardperso.errors import ConfigError
    from cardperso.hsm import Role
    from cardperso.lettershop.usecases import run_lettershop
    from cardperso.production.fieldkeys import field_cipher

    try:
        config = run_step(lambda: _settings(config_file, first_day, delay, capacity, tests, region))
    except ValidationError as e:
        typer.echo(f"error: {ConfigError(str(e.errors()[0]['msg']))}", err=True)
        raise typer.Exit(ConfigError.exit_code) from None
    with bureau(db_url, keystore, operator) as (db, hsm):
        who = login_operator(db, operator)
        with hsm.session(Role.QC, f"lettershop/{who.name}") as session:
            cipher = run_step(lambda: field_cipher(session))
        today = datetime.now(UTC).date()
        result = run_step(
            lambda: run_lettershop(
                db,
                hsm,
                batch_id,
                out,
                by=who,
                cipher=cipher,
                config=config,
                today=today,
                log=typer.echo,
            )
        )
    for line in result.lines():
        typer.echo(line)
    typer.echo(f"output {result.folder}")
    typer.echo(f"manifest {result.manifest.json}")


@lettershop_app.command("config")
def lettershop_config(
    config_file: Path | None = CONFIG,
) -> None:
    """Print the lettershop settings as YAML (the defaults, or a file's, checked)."""
    typer.echo(run_step(lambda: dump_config(load_config(config_file))), nl=False)
