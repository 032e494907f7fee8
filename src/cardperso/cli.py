"""The ``cardperso`` command line: thin - parse, call one use case, print, map
errors to exit codes (DESIGN.md §3, §6)."""

from __future__ import annotations

import typer

from cardperso.errors import CardpersoError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


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


if __name__ == "__main__":
    app()
