"""Webhook events delivered per second by 1 and 4 `phonebooth worker` processes on PostgreSQL.

    .venv/bin/python bench/outbox_bench.py                       # 2000 events, 1 and 4 workers
    .venv/bin/python bench/outbox_bench.py --events 5000 --workers 1 2 4 --concurrency 16

The server is PHONEBOOTH_TEST_POSTGRES_DSN (default
postgresql://phonebooth:phonebooth@127.0.0.1:5432/postgres); a scratch database is created
and dropped. The receiver is a separate process on 127.0.0.1 that answers 200 at once, so the
figures measure the outbox (claim, sign, send, record), not a customer's server. Each round
queues the events first, then starts `phonebooth worker --burst` processes and times them:
"steady" counts from the first attempt to the last (as recorded in the database), "wall"
includes the workers' start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy import delete, func, select

from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_organization
from phonebooth.storage.outbox import enqueue_event
from phonebooth.storage.tables import WebhookDelivery, utcnow
from phonebooth.storage.webhook_config import create_endpoint

DEFAULT_DSN = "postgresql://phonebooth:phonebooth@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app: read the body, answer 204. Nothing else, so it is never the bottleneck."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(_receiver_app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def _start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port)])
    url = f"http://127.0.0.1:{port}/hook"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"{}", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the receiver did not start")


async def _scratch_database(dsn: str) -> tuple[str, str]:
    name = "pb_bench_" + secrets.token_hex(6)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = dsn.rsplit("/", 1)[0] + "/" + name
    return name, url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _drop_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _prepare(url: str, receiver_url: str) -> int:
    db = Database(url)
    try:
        await db.upgrade()
        async with db.session() as session:
            org = await create_organization(session, "bench")
            await create_endpoint(session, org.id, label="bench", url=receiver_url, events=[])
            await session.commit()
            return org.id
    finally:
        await db.dispose()


async def _queue(url: str, org_id: int, events: int) -> None:
    """Empty the outbox, then queue `events` events (one endpoint: one row each)."""
    db = Database(url)
    try:
        async with db.session() as session:
            await session.execute(delete(WebhookDelivery))
            now = utcnow()
            for n in range(events):
                await enqueue_event(
                    session,
                    org_id=org_id,
                    legacy_type=None,
                    endpoint_type="telephony.complete",
                    data={"call_id": n, "status": "completed", "transcripts": []},
                    call_id=n,
                    now=now,
                )
            await session.commit()
    finally:
        await db.dispose()


async def _outcome(url: str) -> tuple[dict[str, int], datetime | None, datetime | None]:
    db = Database(url)
    try:
        async with db.session() as session:
            counts = dict(
                (
                    await session.execute(
                        select(WebhookDelivery.status, func.count()).group_by(
                            WebhookDelivery.status
                        )
                    )
                ).all()
            )
            first, last = (
                await session.execute(
                    select(
                        func.min(WebhookDelivery.last_attempt_at),
                        func.max(WebhookDelivery.last_attempt_at),
                    )
                )
            ).one()
            return counts, first, last
    finally:
        await db.dispose()


def _run_workers(url: str, workers: int, concurrency: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
    env.update(PHONEBOOTH_DATABASE_URL=url, PHONEBOOTH_LOG_LEVEL="warning")
    command = [
        sys.executable,
        "-m",
        "phonebooth",
        "worker",
        "--burst",
        "--concurrency",
        str(concurrency),
    ]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)
    ]
    for process in processes:
        if process.wait(timeout=600) != 0:
            raise RuntimeError(f"a worker exited with {process.returncode}")
    return time.perf_counter() - started


async def _round(url: str, org_id: int, events: int, workers: int, concurrency: int) -> None:
    await _queue(url, org_id, events)
    wall = await asyncio.to_thread(_run_workers, url, workers, concurrency)
    counts, first, last = await _outcome(url)
    delivered = counts.get("delivered", 0)
    steady = (last - first).total_seconds() if first and last else 0.0
    rate = delivered / steady if steady > 0 else float("nan")
    print(
        f"{workers} worker(s) x {concurrency} in flight: {delivered}/{events} delivered; "
        f"steady {rate:,.0f} events/s ({steady:.2f} s), "
        f"wall {delivered / wall:,.0f} events/s ({wall:.2f} s incl. start-up)"
    )
    if delivered != events:
        print(f"  not delivered: {counts}", file=sys.stderr)


async def main(args: argparse.Namespace) -> None:
    dsn = os.environ.get("PHONEBOOTH_TEST_POSTGRES_DSN", DEFAULT_DSN)
    receiver, receiver_url = _start_receiver()
    name, url = await _scratch_database(dsn)
    try:
        org_id = await _prepare(url, receiver_url)
        print(f"{args.events} events per round, receiver answering 204 at {receiver_url}")
        for workers in args.workers:
            await _round(url, org_id, args.events, workers, args.concurrency)
    finally:
        await _drop_database(dsn, name)
        receiver.terminate()
        receiver.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, default=8, help="sends in flight per worker")
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve_receiver:
        _serve_receiver(parsed.serve_receiver)
    else:
        asyncio.run(main(parsed))
