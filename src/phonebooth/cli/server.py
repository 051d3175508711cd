"""Commands that run on the server's machine: serve, db upgrade, orgs create."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from phonebooth.api.bootstrap import BootstrapResult, prepare_installation
from phonebooth.cli.output import print_json
from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_api_key, create_organization

__all__ = ["db_app", "load_settings", "orgs_app", "serve"]

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations (on the server's machine).", no_args_is_help=True)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value stops start-up with a clear message."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            field = "PHONEBOOTH_" + "_".join(str(p) for p in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            typer.echo(f"Configuration error: {field}: {message}", err=True)
        raise typer.Exit(2) from None


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _prepare(settings: Settings) -> BootstrapResult:
    db = Database(settings.resolved_database_url)
    try:
        return await prepare_installation(settings, db)
    finally:
        await db.dispose()


def _announce(settings: Settings, result: BootstrapResult) -> None:
    if result.created_key is None:
        return
    if result.key_file is None:
        typer.echo("PHONEBOOTH_API_KEY is registered as the first admin key.")
        return
    if sys.stdout.isatty():
        typer.echo(f"Your admin API key (also saved to {result.key_file}):\n  {result.created_key}")
    else:
        typer.echo(f"Admin API key written to {result.key_file} (mode 0600).")


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [PHONEBOOTH_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [PHONEBOOTH_PORT]")] = None,
) -> None:
    """Run phonebooth: migrate the database, then serve the API and calls."""
    import uvicorn

    from phonebooth.api.app import create_app

    settings = load_settings(host=host, port=port)
    configure_logging(settings.log_level)
    result = asyncio.run(_prepare(settings))
    _announce(settings, result)
    app = create_app(settings, warm_engines=True)
    typer.echo(app.state.phonebooth.llm_choice.explanation)
    typer.echo(f"phonebooth listening on {settings.resolved_public_url}  (docs at /docs)")
    typer.echo(f"browser phone at {settings.resolved_public_url}/phone")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (serve does this too)."""
    settings = load_settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(run())
    typer.echo("Database is up to date.")


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Argument(help="Organization name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create an organization and print its first admin key."""
    settings = load_settings()

    async def run() -> tuple[int, str]:
        db = Database(settings.resolved_database_url)
        try:
            await prepare_installation(settings, db)
            async with db.session() as session:
                org = await create_organization(session, name)
                _, key = await create_api_key(session, org.id, name="first admin", role="admin")
                await session.commit()
                return org.id, key
        finally:
            await db.dispose()

    org_id, key = asyncio.run(run())
    if as_json:
        print_json({"id": org_id, "name": name, "api_key": key})
    else:
        typer.echo(f"Created organization {org_id} ({name}). Its admin API key:\n  {key}")
