"""At-least-once delivery across a real crash: `phonebooth serve` is SIGKILLed mid-send.

The receiver holds every request open, so the killed server leaves rows claimed and unanswered.
Instead of waiting out the 60 s lease, the test moves those claims into the past, which is what
the passing of time would do, and checks that a restarted server (or `worker --burst`) delivers
every queued event exactly as it was queued, and that the lease is honoured until it lapses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import thunderphone
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_organization
from phonebooth.storage.outbox import enqueue_event
from phonebooth.storage.tables import Call, Organization, WebhookDelivery, utcnow
from phonebooth.storage.webhook_config import create_endpoint, set_org_webhook_url
from phonebooth.webhooks.signing import serialize
from tests.conftest import free_port
from tests.servers import Received, ScriptedReceiver, raw_answer, serve_in_thread

EVENTS = 5  # x 2 receivers = 10 rows: 8 in flight when the server dies (its concurrency), 2 not
IN_FLIGHT = 8
CALL_ID = 424242


@dataclass(frozen=True)
class Queued:
    delivery_id: str
    event_id: str
    path: str
    body: bytes


@dataclass
class Installation:
    tmp_path: Path
    url: str
    receiver: ScriptedReceiver
    gate: threading.Event
    queued: list[Queued]
    secrets: dict[str, str]  # path -> secret

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
        env.update(
            PHONEBOOTH_DATA_DIR=str(self.tmp_path / "data"),
            PHONEBOOTH_DATABASE_URL=self.url,
            PHONEBOOTH_PORT=str(port),
            PHONEBOOTH_LOG_LEVEL="warning",
        )
        return env

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A one-off session on the installation's database (a server may be running)."""
        db = Database(self.url)
        try:
            async with db.session() as session:
                yield session
        finally:
            await db.dispose()

    async def query(self, statement: Any) -> list[Any]:
        async with self.session() as session:
            return list((await session.execute(statement)).scalars())

    async def execute(self, statement: Any) -> None:
        async with self.session() as session:
            await session.execute(statement)
            await session.commit()

    async def deliveries(self) -> list[WebhookDelivery]:
        return await self.query(select(WebhookDelivery).where(WebhookDelivery.blocking.is_(False)))

    async def expire_claims(self) -> None:
        """What 61 seconds of waiting would do to the claims the dead server held."""
        await self.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.claimed_until.is_not(None))
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )


def hold_until(gate: threading.Event) -> Any:
    """Keep the request open (a slow receiver) until the test opens the gate; then 500."""

    async def answer(_request: Request) -> Response:
        deadline = time.monotonic() + 30
        while not gate.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return Response("too late", status_code=500)

    return answer


@pytest.fixture
def held_receiver() -> Iterator[tuple[ScriptedReceiver, threading.Event]]:
    scripted = ScriptedReceiver()
    gate = threading.Event()
    with serve_in_thread(scripted.app, scripted.port):
        try:
            yield scripted, gate
        finally:
            gate.set()


@pytest.fixture
async def installation(
    tmp_path: Path, held_receiver: tuple[ScriptedReceiver, threading.Event]
) -> AsyncIterator[Installation]:
    """A database with a single webhook, one endpoint and EVENTS queued events."""
    receiver, gate = held_receiver
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'phonebooth.db'}"
    db = Database(url)
    try:
        await db.upgrade()
        async with db.session() as session:
            org = await create_organization(session, "crash")
            await set_org_webhook_url(session, org.id, receiver.on("/legacy", hold_until(gate)))
            endpoint = await create_endpoint(
                session,
                org.id,
                label="log",
                url=receiver.on("/endpoint", hold_until(gate)),
                events=[],
            )
            secrets = {"/legacy": org.webhook_secret, "/endpoint": endpoint.secret}
            queued: list[Queued] = []
            for n in range(EVENTS):
                rows = await enqueue_event(
                    session,
                    org_id=org.id,
                    legacy_type="call.complete",
                    endpoint_type="telephony.complete",
                    data={"call_id": 1000 + n, "status": "completed"},
                    call_id=1000 + n,
                    now=utcnow(),
                )
                for row in rows:
                    path = "/legacy" if row.source == "legacy" else "/endpoint"
                    queued.append(Queued(row.id, row.event_id, path, serialize(row.payload)))
            await session.commit()
    finally:
        await db.dispose()
    yield Installation(tmp_path, url, receiver, gate, queued, secrets)


class Server:
    """`python -m phonebooth serve` as a child process."""

    def __init__(self, installation: Installation, name: str) -> None:
        self.port = free_port()
        self.log_path = installation.tmp_path / f"{name}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phonebooth", "serve"],
            env=installation.env(self.port),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited early:\n{self.output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/healthz", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"serve did not answer within 60 s:\n{self.output()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()


async def wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def crash_mid_send(installation: Installation) -> list[Received]:
    """Start serve, let it put IN_FLIGHT requests on the wire, SIGKILL it; then answer 200."""
    server = Server(installation, "first")
    try:
        server.wait_healthy()

        async def all_in_flight() -> bool:
            return len(installation.receiver.requests) >= IN_FLIGHT

        await wait_for(all_in_flight, "the first server's sends")
        await asyncio.sleep(0.3)  # nothing beyond its concurrency goes out while slots are busy
        assert len(installation.receiver.requests) == IN_FLIGHT
        # A call is in progress when the process dies.
        async with installation.session() as session:
            org_id = (await session.execute(select(Organization.id))).scalar_one()
            session.add(
                Call(
                    id=CALL_ID,
                    org_id=org_id,
                    direction="inbound",
                    from_number="+15555550100",
                    to_number="+15555550200",
                    status="in_progress",
                    start_time=utcnow(),
                )
            )
            await session.commit()
        server.kill()
    finally:
        server.stop()
    before = list(installation.receiver.requests)
    installation.receiver.requests.clear()
    for path in ("/legacy", "/endpoint"):
        installation.receiver.on(path, raw_answer("ok", 200))
    installation.gate.set()  # the dead server's requests finish; nobody reads the answers

    rows = await installation.deliveries()
    claimed = [r for r in rows if r.claimed_until is not None]
    assert len(claimed) == IN_FLIGHT  # left behind by the dead sender, unanswered
    assert all(r.status == "retrying" and r.attempt_count == 0 for r in rows)
    return before


def assert_delivered_as_queued(installation: Installation, requests: list[Received]) -> None:
    """Each queued row arrived once, byte for byte, signed, with its event id."""
    queued_ids = {q.event_id for q in installation.queued}
    ours = [r for r in requests if r.headers["x-thunderphone-event-id"] in queued_ids]
    by_key = {(r.path, r.headers["x-thunderphone-event-id"]): r for r in ours}
    assert len(by_key) == len(ours) == len(installation.queued)
    for queued in installation.queued:
        request = by_key[(queued.path, queued.event_id)]
        assert request.body == queued.body
        assert_signed(installation, request)


def assert_signed(installation: Installation, request: Received) -> None:
    assert thunderphone.verify_signature(
        request.headers["x-thunderphone-signature-v2"],
        secret=installation.secrets[request.path],
        method="POST",
        path=request.raw_path,
        body=request.body,
    )


async def test_a_restarted_server_delivers_what_a_killed_one_left_behind(
    installation: Installation,
) -> None:
    first_attempts = await crash_mid_send(installation)
    await installation.expire_claims()

    server = Server(installation, "second")
    try:
        server.wait_healthy()

        async def all_delivered() -> bool:
            rows = await installation.deliveries()
            return all(r.status == "delivered" for r in rows)

        await wait_for(all_delivered, "every delivery to be delivered")
        await asyncio.sleep(0.3)  # and nothing more is sent
    finally:
        server.stop()

    requests = installation.receiver.requests
    assert_delivered_as_queued(installation, requests)
    # The interrupted call was closed at start-up, and its call.complete queued and delivered.
    queued_ids = {q.event_id for q in installation.queued}
    closing = [r for r in requests if r.headers["x-thunderphone-event-id"] not in queued_ids]
    assert sorted((r.path, r.json()["type"]) for r in closing) == [
        ("/endpoint", "telephony.complete"),
        ("/legacy", "call.complete"),
    ]
    for request in closing:
        assert request.json()["data"]["call_id"] == CALL_ID
        assert request.json()["data"]["status"] == "failed"
        assert_signed(installation, request)
    retried = {r.headers["x-thunderphone-event-id"] for r in first_attempts}
    again = {r.headers["x-thunderphone-event-id"] for r in requests}
    assert retried <= again  # the same event id on the retry, so receivers can deduplicate
    for row in await installation.deliveries():
        assert row.attempt_count == 1  # the killed attempt was never recorded
        assert row.claimed_until is None

    [call] = await installation.query(select(Call).where(Call.id == CALL_ID))
    assert (call.status, call.end_reason) == ("failed", "error")
    assert call.end_time is not None


def run_worker_burst(installation: Installation) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phonebooth", "worker", "--burst"],
        env=installation.env(0),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_worker_burst_honours_the_lease_then_takes_over(installation: Installation) -> None:
    await crash_mid_send(installation)

    # Within the lease only the rows the dead server never claimed are sent.
    first = run_worker_burst(installation)
    assert first.returncode == 0, first.stderr
    assert "2 attempt(s): 2 delivered, 0 to retry, 0 failed" in first.stdout
    assert len(installation.receiver.requests) == len(installation.queued) - IN_FLIGHT

    await installation.expire_claims()
    second = run_worker_burst(installation)
    assert second.returncode == 0, second.stderr
    assert f"{IN_FLIGHT} attempt(s): {IN_FLIGHT} delivered" in second.stdout

    assert_delivered_as_queued(installation, installation.receiver.requests)
    assert all(r.status == "delivered" for r in await installation.deliveries())

    third = run_worker_burst(installation)  # nothing is due any more
    assert "0 attempt(s)" in third.stdout


async def test_worker_delivers_until_sigterm_then_exits_cleanly(
    installation: Installation,
) -> None:
    for path in ("/legacy", "/endpoint"):
        installation.receiver.on(path, raw_answer("ok", 200))
    process = subprocess.Popen(
        [sys.executable, "-m", "phonebooth", "worker", "--poll-interval", "0.05"],
        env=installation.env(0),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        async def all_delivered() -> bool:
            return all(r.status == "delivered" for r in await installation.deliveries())

        await wait_for(all_delivered, "the worker to deliver everything")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert f"worker done: {len(installation.queued)} attempt(s)" in output
    assert_delivered_as_queued(installation, installation.receiver.requests)
