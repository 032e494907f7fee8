"""What every ``cardperso`` command group shares: the options that name the database,
the security module and the operator, where secrets come from, how an error ends a
command, and opening the bureau (database + security module) for one command.

Secrets never come from an argument (shell history, ``ps``): the operator's password
from ``$CARDPERSO_OPERATOR_PASSWORD``, the keystore passphrase or token PIN from
``$CARDPERSO_HSM_PASSPHRASE``, else a prompt without echo.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError

if TYPE_CHECKING:
    from cardperso.hsm.api import Hsm
    from cardperso.production.db import Database
    from cardperso.production.operators import Principal

__all__ = [
    "DB_URL",
    "KEYSTORE",
    "PASSPHRASE_ENV",
    "PASSWORD_ENV",
    "bureau",
    "default_operator",
    "login_operator",
    "run_step",
    "secret",
]

_T = TypeVar("_T")

PASSWORD_ENV = "CARDPERSO_OPERATOR_PASSWORD"  # noqa: S105 - a variable name
PASSPHRASE_ENV = "CARDPERSO_HSM_PASSPHRASE"  # noqa: S105 - a variable name

DB_URL = typer.Option(None, "--db", envvar="CARDPERSO_DATABASE_URL", help="database URL")
KEYSTORE = typer.Option(
    Path("cardperso.keystore"),
    "--keystore",
    envvar="CARDPERSO_KEYSTORE",
    help="soft HSM keystore file, or a PKCS#11 token: pkcs11:<module.so>?token=<label>",
)


def default_operator() -> str:
    """The login name, as the default ``--operator``."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


def run_step(step: Callable[[], _T]) -> _T:
    """Run one use case; a CardpersoError becomes one line on stderr and its exit code."""
    try:
        return step()
    except CardpersoError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None


def secret(env: str, prompt: str, *, confirm: bool = False) -> SecretStr:
    """A secret from the environment variable ``env``, else a prompt without echo."""
    text = os.environ.get(env)
    if not text:
        text = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return SecretStr(text)


@contextmanager
def bureau(db_url: str | None, keystore: Path, operator: str) -> Iterator[tuple[Database, Hsm]]:
    """The production database and the security module, for one command."""
    from cardperso.hsm.backends import open_hsm
    from cardperso.production.db import Database, default_url

    db = Database.open(db_url or default_url())
    try:
        hsm = run_step(
            lambda: open_hsm(
                keystore, secret(PASSPHRASE_ENV, "Keystore passphrase"), operator=operator
            )
        )
        try:
            yield db, hsm
        finally:
            hsm.close()
    finally:
        db.dispose()


def login_operator(db: Database, operator: str) -> Principal:
    """The authenticated operator (password from the environment or a prompt)."""
    from cardperso.production.operators import login

    return run_step(lambda: login(db, operator, secret(PASSWORD_ENV, f"Password for {operator}")))
