"""The `phonebooth` entry point: wires the command groups together."""

from __future__ import annotations

import typer

from phonebooth import __version__
from phonebooth.cli.call import call
from phonebooth.cli.resources import agents_app, keys_app, numbers_app, webhook_app
from phonebooth.cli.server import db_app, orgs_app, serve
from phonebooth.cli.worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    help="phonebooth: a self-hosted voice-AI phone agent server.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve)
app.command("worker")(worker)
app.command("call")(call)
app.add_typer(db_app, name="db")
app.add_typer(orgs_app, name="orgs")
app.add_typer(agents_app, name="agents")
app.add_typer(numbers_app, name="numbers")
app.add_typer(webhook_app, name="webhook")
app.add_typer(keys_app, name="keys")


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
