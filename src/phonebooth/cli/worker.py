"""`phonebooth worker`: the outbox dispatcher on its own, next to or instead of `serve`'s.

Running it in separate processes lets webhook delivery scale apart from calls (on PostgreSQL
any number of workers share the outbox); `--burst` delivers what is due and exits, for scripts
and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Annotated

import typer

from phonebooth.cli.server import configure_logging, load_settings
from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.storage.tables import utcnow
from phonebooth.webhooks.dispatcher import DELIVERY_TIMEOUT, Dispatcher
from phonebooth.webhooks.url_policy import UrlPolicy, make_client

__all__ = ["worker"]

_PROGRESS_EVERY = 10.0  # seconds between progress lines in the long-running mode
_BURST_PROGRESS_EVERY = 1.0


def _summary(dispatcher: Dispatcher) -> str:
    stats = dispatcher.stats
    total = stats.total()
    return (
        f"{total} attempt(s): {stats['delivered']} delivered, "
        f"{stats['retrying']} to retry, {stats['failed']} failed"
    )


async def _burst(dispatcher: Dispatcher) -> None:
    shown_at = time.monotonic()
    while await dispatcher.run_once():
        if time.monotonic() - shown_at >= _BURST_PROGRESS_EVERY:
            typer.echo(f"so far {_summary(dispatcher)}")
            shown_at = time.monotonic()


async def _forever(dispatcher: Dispatcher, poll_interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, stop.set)
    runner = asyncio.create_task(dispatcher.run_forever(stop, poll_interval=poll_interval))
    shown = ""
    while not runner.done():
        await asyncio.wait({runner}, timeout=_PROGRESS_EVERY)
        line = _summary(dispatcher)
        if line != shown and dispatcher.stats.total():
            typer.echo(line)
            shown = line
    await runner


async def _run(settings: Settings, *, burst: bool, concurrency: int, poll_interval: float) -> None:
    db = Database(settings.resolved_database_url)
    policy = UrlPolicy(allow_private=settings.private_urls_allowed)
    client = make_client(policy, timeout=DELIVERY_TIMEOUT)
    try:
        await db.upgrade()  # idempotent; a worker may start before any server did
        dispatcher = Dispatcher(
            db, client, clock=utcnow, rng=random.random, concurrency=concurrency
        )
        if burst:
            await _burst(dispatcher)
        else:
            await _forever(dispatcher, poll_interval)
        typer.echo(f"worker done: {_summary(dispatcher)}")
    finally:
        await client.aclose()
        await db.dispose()


def worker(
    burst: Annotated[
        bool, typer.Option("--burst", help="Deliver the events due now, then exit")
    ] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Deliveries in flight at once")
    ] = 8,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks when nothing is due")
    ] = 0.5,
) -> None:
    """Deliver webhook events from the outbox (PHONEBOOTH_DATABASE_URL)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    asyncio.run(_run(settings, burst=burst, concurrency=concurrency, poll_interval=poll_interval))
