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

import getpass
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError
from cardperso.lettershop.config import LettershopConfig, TestLetters, dump_config, load_config

__all__ = ["lettershop_app"]

lettershop_app = typer.Typer(
    no_args_is_help=True,
    help="The lettershop: presort, carriers, PIN mailers, inserter, dispatch manifest.",
)

_T = TypeVar("_T")
PASSWORD_ENV = "CARDPERSO_OPERATOR_PASSWORD"  # noqa: S105 - a variable name
PASSPHRASE_ENV = "CARDPERSO_HSM_PASSPHRASE"  # noqa: S105 - a variable name


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


DB_URL = typer.Option(None, "--db", envvar="CARDPERSO_DATABASE_URL", help="database URL")
KEYSTORE = typer.Option(
    Path("cardperso.keystore"),
    "--keystore",
    envvar="CARDPERSO_KEYSTORE",
    help="soft HSM keystore file, or a PKCS#11 token: pkcs11:<module.so>?token=<label>",
)
OPERATOR = typer.Option(_default_operator(), "--operator", help="operator name (authenticated)")
CONFIG = typer.Option(None, "--config", help="lettershop settings (YAML; default: built in)")


def _run(step: Callable[[], _T]) -> _T:
    try:
        return step()
    except CardpersoError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def _secret(env: str, prompt: str) -> SecretStr:
    text = os.environ.get(env)
    if not text:
        text = typer.prompt(prompt, hide_input=True)
    return SecretStr(text)


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
    from cardperso.hsm.backends import open_hsm
    from cardperso.lettershop.usecases import run_lettershop
    from cardperso.line.fieldkeys import field_cipher
    from cardperso.production.db import Database, default_url
    from cardperso.production.operators import login

    try:
        config = _run(lambda: _settings(config_file, first_day, delay, capacity, tests, region))
    except ValidationError as e:
        typer.echo(f"error: {ConfigError(str(e.errors()[0]['msg']))}", err=True)
        raise typer.Exit(ConfigError.exit_code) from None
    db = Database.open(db_url or default_url())
    try:
        who = _run(lambda: login(db, operator, _secret(PASSWORD_ENV, f"Password for {operator}")))
        hsm = _run(
            lambda: open_hsm(
                keystore, _secret(PASSPHRASE_ENV, "Keystore passphrase"), operator=operator
            )
        )
        try:
            with hsm.session(Role.QC, f"lettershop/{who.name}") as session:
                cipher = _run(lambda: field_cipher(session))
            today = datetime.now(UTC).date()
            result = _run(
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
        finally:
            hsm.close()
    finally:
        db.dispose()
    for line in result.lines():
        typer.echo(line)
    typer.echo(f"output {result.folder}")
    typer.echo(f"manifest {result.manifest.json}")


@lettershop_app.command("config")
def lettershop_config(
    config_file: Path | None = CONFIG,
) -> None:
    """Print the lettershop settings as YAML (the defaults, or a file's, checked)."""
    typer.echo(_run(lambda: dump_config(load_config(config_file))), nl=False)
