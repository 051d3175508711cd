"""The outbox and its dispatcher against real databases and a real HTTP receiver.

The dispatcher gets an injected clock and a fixed random source, so retries happen exactly when
the schedule says and the test drives time forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import thunderphone
from sqlalchemy import select, text, update
from starlette.requests import Request
from starlette.responses import Response

from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_organization
from phonebooth.storage.outbox import (
    LEASE,
    AttemptRecord,
    claim_due,
    enqueue_event,
    record_attempt,
)
from phonebooth.storage.tables import Organization, WebhookDelivery, WebhookEndpoint, utcnow
from phonebooth.storage.webhook_config import (
    create_endpoint,
    rotate_endpoint_secret,
    set_org_webhook_url,
)
from phonebooth.webhooks.dispatcher import Dispatcher
from phonebooth.webhooks.signing import serialize
from phonebooth.webhooks.url_policy import UrlPolicy, make_client
from tests.conftest import Api, _drop_postgres_database, _postgres_database, free_port
from tests.servers import Received, ScriptedReceiver, raw_answer

JITTER_DRAW = 0.75  # every delay is scaled by 1 + 0.1 * (2 * 0.75 - 1) = 1.05
COMPLETE = {"call_id": 987654321, "status": "completed", "end_reason": "caller_hangup"}

Behaviour = Callable[[Request], Awaitable[Response]]


class Clock:
    """A wall clock that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def set(self, when: datetime) -> None:
        self.now = when


def held(gate: threading.Event) -> Behaviour:
    """Keep the request open until the test sets `gate` (a hung receiver), then answer 200."""

    async def answer(_request: Request) -> Response:
        while not gate.is_set():
            await asyncio.sleep(0.02)
        return Response("late")

    return answer


def in_turn(*behaviours: Behaviour) -> Behaviour:
    """Answer the n-th request with the n-th behaviour; the last one repeats."""
    served = 0

    async def answer(request: Request) -> Response:
        nonlocal served
        behaviour = behaviours[min(served, len(behaviours) - 1)]
        served += 1
        return await behaviour(request)

    return answer


@dataclass
class Outbox:
    db: Database
    org_id: int
    clock: Clock
    receiver: ScriptedReceiver
    client: httpx.AsyncClient

    def dispatcher(self, db: Database | None = None, **options: Any) -> Dispatcher:
        return Dispatcher(
            db or self.db, self.client, clock=self.clock, rng=lambda: JITTER_DRAW, **options
        )

    async def endpoint(
        self, path: str, events: list[str] | None = None, behaviour: Behaviour | None = None
    ) -> WebhookEndpoint:
        url = self.receiver.on(path, behaviour or raw_answer("ok"))
        async with self.db.session() as session:
            row = await create_endpoint(
                session, self.org_id, label=path.strip("/"), url=url, events=events or []
            )
            await session.commit()
            return row

    async def single_webhook(self, path: str, behaviour: Behaviour) -> Organization:
        url = self.receiver.on(path, behaviour)
        async with self.db.session() as session:
            org = await set_org_webhook_url(session, self.org_id, url)
            await session.commit()
            return org

    async def enqueue(
        self, legacy_type: str | None = "call.complete", data: dict[str, Any] | None = None
    ) -> list[WebhookDelivery]:
        async with self.db.session() as session:
            rows = await enqueue_event(
                session,
                org_id=self.org_id,
                legacy_type=legacy_type,
                endpoint_type="telephony.complete",
                data=data or COMPLETE,
                call_id=987654321,
                now=self.clock(),
            )
            await session.commit()
            return rows

    async def row(self, delivery_id: str) -> WebhookDelivery:
        async with self.db.session() as session:
            row = await session.get(WebhookDelivery, delivery_id)
            assert row is not None
            return row

    async def endpoint_row(self, endpoint_id: str) -> WebhookEndpoint:
        async with self.db.session() as session:
            row = await session.get(WebhookEndpoint, endpoint_id)
            assert row is not None
            return row


@asynccontextmanager
async def open_outbox(database_url: str, receiver: ScriptedReceiver) -> AsyncIterator[Outbox]:
    db = Database(database_url)
    await db.upgrade()
    async with db.session() as session:
        org = await create_organization(session, "outbox")
        await session.commit()
    client = make_client(UrlPolicy(allow_private=True), timeout=30)
    start = utcnow().replace(microsecond=0)
    try:
        yield Outbox(db, org.id, Clock(start), receiver, client)
    finally:
        await client.aclose()
        await db.dispose()


@pytest.fixture
async def outbox(database_url: str, receiver: ScriptedReceiver) -> AsyncIterator[Outbox]:
    async with open_outbox(database_url, receiver) as opened:
        yield opened


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """For what only PostgreSQL has (row locks); skipped locally, required in CI."""
    name, url = await _postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


def assert_signed(request: Received, secrets: list[str], at: datetime, *, v1: bool = True) -> None:
    """V2 checked by ThunderPhone's own toolkit, V1 (the newest secret's) by hand."""
    header = request.headers["x-thunderphone-signature-v2"]
    assert header.startswith(f"t={int(at.timestamp())},")
    assert thunderphone.verify_signature(
        header,
        secret=secrets,
        method="POST",
        path=request.raw_path,
        body=request.body,
        now=at.timestamp(),
    )
    if v1:
        digest = hmac.new(secrets[0].encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-thunderphone-signature"] == digest


# -- enqueue ------------------------------------------------------------------------------------


async def test_enqueue_writes_one_row_per_receiver_with_one_event_id(outbox: Outbox) -> None:
    await outbox.single_webhook("/legacy", raw_answer("ok"))
    explicit = await outbox.endpoint("/explicit", ["telephony.complete"])
    catch_all = await outbox.endpoint("/all", [])
    await outbox.endpoint("/other", ["telephony.tool"])
    disabled = await outbox.endpoint("/disabled", [])
    async with outbox.db.session() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == disabled.id)
            .values(status="disabled")
        )
        await session.commit()

    rows = await outbox.enqueue()

    assert [(r.source, r.endpoint_id) for r in rows] == [
        ("legacy", None),
        ("endpoint", explicit.id),
        ("endpoint", catch_all.id),
    ]
    assert len({r.event_id for r in rows}) == 1
    assert [r.payload for r in rows] == [
        {"data": COMPLETE, "type": "call.complete"},
        {"data": COMPLETE, "type": "telephony.complete"},
        {"data": COMPLETE, "type": "telephony.complete"},
    ]
    for row in rows:
        stored = await outbox.row(row.id)
        assert stored.status == "retrying"
        assert stored.attempt_count == 0
        assert stored.next_retry_at == outbox.clock()
        assert stored.claimed_until is None
        assert stored.blocking is False
        assert stored.call_id == 987654321


async def test_enqueue_belongs_to_the_callers_transaction(outbox: Outbox) -> None:
    await outbox.endpoint("/all", [])
    async with outbox.db.session() as session:
        rows = await enqueue_event(
            session,
            org_id=outbox.org_id,
            legacy_type="call.complete",
            endpoint_type="telephony.complete",
            data=COMPLETE,
            call_id=None,
            now=outbox.clock(),
        )
        assert len(rows) == 1
        await session.rollback()  # the state change failed: its event must vanish with it
    async with outbox.db.session() as session:
        assert (await session.execute(select(WebhookDelivery))).first() is None


async def test_enqueue_without_receivers_writes_nothing(outbox: Outbox) -> None:
    assert await outbox.enqueue() == []


# -- retries ------------------------------------------------------------------------------------


async def test_failing_twice_then_succeeding_delivers_one_event_three_times(
    outbox: Outbox,
) -> None:
    endpoint = await outbox.endpoint(
        "/hook",
        ["telephony.complete"],
        in_turn(raw_answer("down", 500), raw_answer("down", 500), raw_answer("ok", 200)),
    )
    [row] = await outbox.enqueue()
    dispatcher = outbox.dispatcher()
    first = outbox.clock()

    assert await dispatcher.run_once() == 1
    after_one = await outbox.row(row.id)
    assert after_one.status == "retrying"
    assert after_one.attempt_count == 1
    assert after_one.http_status == 500
    assert after_one.failure_category == "http_error"
    assert after_one.errors == ["receiver answered HTTP 500"]
    assert after_one.first_attempt_at == first
    assert after_one.last_attempt_at == first
    assert after_one.claimed_until is None
    assert after_one.next_retry_at == first + timedelta(seconds=5 * 1.05)

    outbox.clock.advance(timedelta(seconds=5))  # not yet due: 5.25 s
    assert await dispatcher.run_once() == 0
    second = after_one.next_retry_at
    outbox.clock.set(second)
    assert await dispatcher.run_once() == 1
    after_two = await outbox.row(row.id)
    assert after_two.attempt_count == 2
    assert after_two.first_attempt_at == first
    assert after_two.last_attempt_at == second
    assert after_two.next_retry_at == second + timedelta(seconds=30 * 1.05)

    third = after_two.next_retry_at
    outbox.clock.set(third)
    assert await dispatcher.run_once() == 1
    done = await outbox.row(row.id)
    assert done.status == "delivered"
    assert done.attempt_count == 3
    assert done.http_status == 200
    assert done.failure_category is None
    assert done.errors is None
    assert done.next_retry_at is None
    assert done.latency_ms is not None

    outbox.clock.advance(timedelta(hours=1))
    assert await dispatcher.run_once() == 0
    requests = outbox.receiver.requests_to("/hook")
    assert len(requests) == 3
    assert {r.headers["x-thunderphone-event-id"] for r in requests} == {row.event_id}
    assert len({r.headers["x-thunderphone-request-id"] for r in requests}) == 3
    for request, at in zip(requests, [first, second, third], strict=True):
        assert request.body == serialize({"data": COMPLETE, "type": "telephony.complete"})
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("phonebooth/")
        assert_signed(request, [endpoint.secret], at)
    assert dispatcher.stats == {"retrying": 2, "delivered": 1}


async def test_a_longer_retry_after_wins_over_the_schedule(outbox: Outbox) -> None:
    await outbox.endpoint("/busy", [], raw_answer("slow down", 503, headers={"Retry-After": "120"}))
    [row] = await outbox.enqueue()
    await outbox.dispatcher().run_once()
    stored = await outbox.row(row.id)
    assert stored.http_status == 503
    assert stored.next_retry_at == outbox.clock() + timedelta(seconds=120)


async def test_a_shorter_retry_after_does_not_shorten_the_schedule(outbox: Outbox) -> None:
    await outbox.endpoint("/busy", [], raw_answer("", 429, headers={"Retry-After": "1"}))
    [row] = await outbox.enqueue()
    await outbox.dispatcher().run_once()
    assert (await outbox.row(row.id)).next_retry_at == outbox.clock() + timedelta(seconds=5.25)


async def test_gives_up_24_hours_after_the_first_attempt(outbox: Outbox) -> None:
    await outbox.endpoint("/down", [], raw_answer("down", 500))
    [row] = await outbox.enqueue()
    dispatcher = outbox.dispatcher()
    first = outbox.clock()
    await dispatcher.run_once()
    # The worker was away: the next attempt happens 15 s before the window closes, and the
    # one after it (30 s later) would start past it.
    outbox.clock.set(first + timedelta(hours=24) - timedelta(seconds=15))
    assert await dispatcher.run_once() == 1
    stored = await outbox.row(row.id)
    assert stored.status == "failed"
    assert stored.attempt_count == 2
    assert stored.next_retry_at is None
    outbox.clock.advance(timedelta(days=2))
    assert await dispatcher.run_once() == 0


async def test_the_single_webhook_gets_its_own_type_and_secret(outbox: Outbox) -> None:
    org = await outbox.single_webhook("/legacy", raw_answer("ok"))
    [row] = await outbox.enqueue()
    await outbox.dispatcher().run_once()
    [request] = outbox.receiver.requests_to("/legacy")
    assert request.json() == {"data": COMPLETE, "type": "call.complete"}
    assert request.headers["x-thunderphone-event-id"] == row.event_id
    assert_signed(request, [org.webhook_secret], outbox.clock())
    assert (await outbox.row(row.id)).status == "delivered"


async def test_secrets_and_url_are_read_at_send_time(outbox: Outbox) -> None:
    """A rotation between enqueue and send signs with both secrets; a moved URL is followed."""
    endpoint = await outbox.endpoint("/old", [])
    [row] = await outbox.enqueue()
    new_url = outbox.receiver.on("/new", raw_answer("ok"))
    async with outbox.db.session() as session:
        rotated = await rotate_endpoint_secret(session, outbox.org_id, endpoint.id)
        rotated.url = new_url
        await session.commit()
    await outbox.dispatcher().run_once()
    assert outbox.receiver.requests_to("/old") == []
    [request] = outbox.receiver.requests_to("/new")
    header = request.headers["x-thunderphone-signature-v2"]
    assert header.count("v1=") == 2
    assert_signed(request, [rotated.secret], outbox.clock())
    assert_signed(request, [endpoint.secret], outbox.clock(), v1=False)  # old secret: V2 only
    assert (await outbox.row(row.id)).url == new_url


# -- endpoint status ----------------------------------------------------------------------------


async def test_410_disables_the_endpoint_and_stops_retries(outbox: Outbox) -> None:
    gone = await outbox.endpoint("/gone", [], raw_answer("gone", 410))
    [first] = await outbox.enqueue()
    outbox.clock.advance(timedelta(seconds=1))
    [second] = await outbox.enqueue()
    dispatcher = outbox.dispatcher(concurrency=1)
    assert await dispatcher.run_once() == 1

    stored = await outbox.row(first.id)
    assert stored.status == "failed"
    assert stored.http_status == 410
    assert stored.next_retry_at is None
    assert (await outbox.endpoint_row(gone.id)).status == "disabled"

    # The event queued before the 410 is not sent to a disabled endpoint either.
    assert await dispatcher.run_once() == 1
    queued = await outbox.row(second.id)
    assert queued.status == "failed"
    assert queued.errors == ["the webhook endpoint is disabled"]
    assert len(outbox.receiver.requests_to("/gone")) == 1

    outbox.clock.advance(timedelta(hours=1))
    assert await dispatcher.run_once() == 0
    assert await outbox.enqueue() == []  # a disabled endpoint receives no new events


async def test_410_from_the_single_webhook_stops_retries_but_disables_nothing(
    outbox: Outbox,
) -> None:
    await outbox.single_webhook("/legacy", raw_answer("gone", 410))
    [row] = await outbox.enqueue()
    await outbox.dispatcher().run_once()
    stored = await outbox.row(row.id)
    assert stored.status == "failed"
    assert stored.http_status == 410
    outbox.clock.advance(timedelta(hours=1))
    assert await outbox.dispatcher().run_once() == 0
    async with outbox.db.session() as session:
        org = await session.get(Organization, outbox.org_id)
        assert org is not None
        assert org.webhook_url == outbox.receiver.url("/legacy")
    assert len(await outbox.enqueue()) == 1  # the next event still goes to the webhook


async def test_a_failing_endpoint_returns_to_active_on_its_next_2xx(outbox: Outbox) -> None:
    endpoint = await outbox.endpoint("/back", [], raw_answer("ok"))
    async with outbox.db.session() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(status="failing", failing_since=outbox.clock() - timedelta(hours=25))
        )
        await session.commit()
    [row] = await outbox.enqueue()  # a failing endpoint still receives events
    await outbox.dispatcher().run_once()
    assert (await outbox.row(row.id)).status == "delivered"
    restored = await outbox.endpoint_row(endpoint.id)
    assert restored.status == "active"
    assert restored.failing_since is None


async def test_an_endpoint_failing_for_24_hours_becomes_failing(outbox: Outbox) -> None:
    endpoint = await outbox.endpoint("/flaky", [], raw_answer("down", 500))
    start = outbox.clock()
    await outbox.enqueue()
    dispatcher = outbox.dispatcher()
    await dispatcher.run_once()
    after_first = await outbox.endpoint_row(endpoint.id)
    assert (after_first.status, after_first.failing_since) == ("active", start)

    outbox.clock.set(start + timedelta(hours=23, minutes=59))
    await outbox.enqueue()  # a fresh event, so there is something to fail at this time
    await dispatcher.run_once()
    assert (await outbox.endpoint_row(endpoint.id)).status == "active"

    outbox.clock.set(start + timedelta(hours=24))
    await outbox.enqueue()
    await dispatcher.run_once()
    failing = await outbox.endpoint_row(endpoint.id)
    assert failing.status == "failing"
    assert failing.failing_since == start


async def test_an_endpoint_that_recovers_starts_its_failure_run_afresh(outbox: Outbox) -> None:
    endpoint = await outbox.endpoint(
        "/blip", [], in_turn(raw_answer("", 500), raw_answer("ok"), raw_answer("", 500))
    )
    dispatcher = outbox.dispatcher()
    start = outbox.clock()
    await outbox.enqueue()
    await dispatcher.run_once()  # 0 h: fails
    outbox.clock.set(start + timedelta(hours=20))
    await dispatcher.run_once()  # 20 h: its retry succeeds
    outbox.clock.set(start + timedelta(hours=30))
    await outbox.enqueue()
    await dispatcher.run_once()  # 30 h: a new event fails
    assert len(outbox.receiver.requests_to("/blip")) == 3
    row = await outbox.endpoint_row(endpoint.id)
    assert row.status == "active"  # 0 h of failure since the last 2xx, not 30
    assert row.failing_since == start + timedelta(hours=30)


# -- failures without an answer -----------------------------------------------------------------


async def test_connection_failures_and_timeouts_are_retried(outbox: Outbox) -> None:
    closed_port = free_port()
    async with outbox.db.session() as session:
        await create_endpoint(
            session,
            outbox.org_id,
            label="closed",
            url=f"http://127.0.0.1:{closed_port}/x",
            events=[],
        )
        await session.commit()
    gate = threading.Event()
    slow_url = outbox.receiver.on("/slow", held(gate))
    async with outbox.db.session() as session:
        await create_endpoint(session, outbox.org_id, label="slow", url=slow_url, events=[])
        await session.commit()
    rows = await outbox.enqueue()
    try:
        await outbox.dispatcher(timeout=0.3).run_once()
    finally:
        gate.set()
    stored = {r.endpoint_label: await outbox.row(r.id) for r in rows}
    assert stored["closed"].failure_category == "connection"
    assert stored["slow"].failure_category == "timeout"
    for row in stored.values():
        assert row.status == "retrying"
        assert row.http_status is None
        assert row.attempt_count == 1
        assert row.errors and row.errors[0]


async def test_a_refused_address_is_recorded_as_url_not_allowed(outbox: Outbox) -> None:
    await outbox.endpoint("/private", [])
    [row] = await outbox.enqueue()
    strict = make_client(UrlPolicy(allow_private=False), timeout=30)
    try:
        dispatcher = Dispatcher(outbox.db, strict, clock=outbox.clock, rng=lambda: JITTER_DRAW)
        await dispatcher.run_once()
    finally:
        await strict.aclose()
    stored = await outbox.row(row.id)
    assert stored.failure_category == "url_not_allowed"
    assert stored.status == "retrying"
    assert outbox.receiver.requests == []


async def test_a_deleted_endpoint_fails_its_pending_deliveries(outbox: Outbox) -> None:
    endpoint = await outbox.endpoint("/bye", [])
    [row] = await outbox.enqueue()
    async with outbox.db.session() as session:
        await session.execute(
            text("DELETE FROM webhook_endpoints WHERE id = :id"), {"id": endpoint.id}
        )
        await session.commit()
    await outbox.dispatcher().run_once()
    stored = await outbox.row(row.id)
    assert stored.status == "failed"
    assert stored.errors == ["the webhook endpoint was deleted"]
    assert outbox.receiver.requests == []


# -- claims and leases --------------------------------------------------------------------------


async def test_a_claim_lasts_60_seconds_then_lapses(outbox: Outbox) -> None:
    await outbox.endpoint("/lease", [])
    [row] = await outbox.enqueue()
    start = outbox.clock()
    async with outbox.db.session() as session:
        [claimed] = await claim_due(session, start, limit=10)
    assert claimed.id == row.id
    assert claimed.claimed_until == start + LEASE
    for later in (timedelta(0), timedelta(seconds=30), LEASE):
        async with outbox.db.session() as session:
            assert await claim_due(session, start + later, limit=10) == []
    async with outbox.db.session() as session:
        [again] = await claim_due(session, start + LEASE + timedelta(seconds=1), limit=10)
    assert again.id == row.id
    assert again.claimed_until == start + 2 * LEASE + timedelta(seconds=1)

    # The first claimer outlived its lease: its late result must not overwrite the new claim.
    record = AttemptRecord(
        status="delivered",
        url=row.url,
        http_status=200,
        failure_category=None,
        errors=None,
        latency_ms=1,
        attempted_at=start,
        next_retry_at=None,
    )
    async with outbox.db.session() as session:
        assert await record_attempt(session, claimed, record) is False
        assert await record_attempt(session, again, record) is True
        await session.commit()
    assert (await outbox.row(row.id)).status == "delivered"


async def test_a_row_whose_sender_died_is_sent_again_after_the_lease(outbox: Outbox) -> None:
    await outbox.endpoint("/again", [])
    [row] = await outbox.enqueue()
    start = outbox.clock()
    async with outbox.db.session() as session:
        await claim_due(session, start, limit=10)  # a worker claims it, then dies
    dispatcher = outbox.dispatcher()
    outbox.clock.advance(timedelta(seconds=59))
    assert await dispatcher.run_once() == 0
    outbox.clock.advance(timedelta(seconds=2))
    assert await dispatcher.run_once() == 1
    assert (await outbox.row(row.id)).status == "delivered"
    [request] = outbox.receiver.requests_to("/again")
    assert request.headers["x-thunderphone-event-id"] == row.event_id


async def test_claims_take_the_oldest_due_rows_first(outbox: Outbox) -> None:
    await outbox.endpoint("/order", [])
    start = outbox.clock()
    ids = []
    for minutes in (3, 1, 2):
        outbox.clock.set(start + timedelta(minutes=minutes))
        [row] = await outbox.enqueue()
        ids.append((minutes, row.id))
    async with outbox.db.session() as session:
        claimed = await claim_due(session, start + timedelta(minutes=5), limit=2)
    assert [r.id for r in claimed] == [i for _, i in sorted(ids)[:2]]


async def test_racing_claimers_take_disjoint_rows(outbox: Outbox, database_url: str) -> None:
    """Separate engines, as separate worker processes would have; each row goes to one only."""
    await outbox.endpoint("/race", [])
    expected: set[str] = set()
    for _ in range(60):
        expected.update(r.id for r in await outbox.enqueue())
    engines = [Database(database_url) for _ in range(4)]
    taken: list[list[str]] = [[] for _ in engines]

    async def claimer(index: int) -> None:
        while True:
            async with engines[index].session() as session:
                rows = await claim_due(session, outbox.clock(), limit=5)
            if not rows:
                return
            taken[index].extend(r.id for r in rows)

    try:
        await asyncio.gather(*(claimer(i) for i in range(len(engines))))
    finally:
        for engine in engines:
            await engine.dispose()
    everything = [i for ids in taken for i in ids]
    assert len(everything) == len(set(everything))
    assert set(everything) == expected


async def test_racing_dispatchers_send_each_event_once(outbox: Outbox, database_url: str) -> None:
    await outbox.endpoint("/both", [])
    events: set[str] = set()
    for _ in range(40):
        events.update(r.event_id for r in await outbox.enqueue())
    engines = [Database(database_url) for _ in range(2)]
    dispatchers = [outbox.dispatcher(db=engine, concurrency=4) for engine in engines]

    async def drain(dispatcher: Dispatcher) -> None:
        while await dispatcher.run_once():
            pass

    try:
        await asyncio.gather(*(drain(d) for d in dispatchers))
    finally:
        for engine in engines:
            await engine.dispose()
    sent = [r.headers["x-thunderphone-event-id"] for r in outbox.receiver.requests_to("/both")]
    assert sorted(sent) == sorted(events)
    assert sum(d.stats["delivered"] for d in dispatchers) == 40


async def test_postgres_claims_skip_rows_locked_by_another_transaction(
    postgres_url: str, receiver: ScriptedReceiver
) -> None:
    """SKIP LOCKED: a claimer neither waits for nor takes rows another one is claiming."""
    async with open_outbox(postgres_url, receiver) as outbox:
        await outbox.endpoint("/locks", [])
        ids = sorted([(await outbox.enqueue())[0].id for _ in range(4)])
        other = Database(postgres_url)
        try:
            async with other.session() as holder:
                locked = await holder.execute(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.id.in_(ids[:2]))
                    .with_for_update()
                )
                assert len(locked.all()) == 2
                async with outbox.db.session() as session:
                    claimed = await asyncio.wait_for(
                        claim_due(session, outbox.clock(), limit=10), timeout=5
                    )
                assert {r.id for r in claimed} == set(ids[2:])
                await holder.rollback()
        finally:
            await other.dispose()


# -- the dispatcher as a background task --------------------------------------------------------


async def test_run_forever_delivers_and_stops_cleanly(outbox: Outbox) -> None:
    await outbox.endpoint("/bg", [])
    rows = [r for _ in range(12) for r in await outbox.enqueue()]
    dispatcher = outbox.dispatcher(concurrency=3)
    dispatcher.start(poll_interval=0.05)
    try:
        for _ in range(200):
            if len(outbox.receiver.requests_to("/bg")) == len(rows):
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop()
    for row in rows:
        stored = await outbox.row(row.id)
        assert stored.status == "delivered"
        assert stored.claimed_until is None
    assert len(outbox.receiver.requests_to("/bg")) == len(rows)
    await dispatcher.stop()  # a second stop is harmless


async def test_stop_abandons_sends_that_outlast_the_grace_period(outbox: Outbox) -> None:
    """A hung receiver does not hold up shutdown; its row stays claimed and is sent later."""
    gate = threading.Event()
    await outbox.endpoint("/hung", [], held(gate))
    [row] = await outbox.enqueue()
    dispatcher = outbox.dispatcher()
    dispatcher.start(poll_interval=0.05)
    try:
        for _ in range(100):
            if outbox.receiver.requests_to("/hung"):
                break
            await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await dispatcher.stop(grace=0.2)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        gate.set()
    stored = await outbox.row(row.id)
    assert (stored.status, stored.attempt_count) == ("retrying", 0)
    assert stored.claimed_until == outbox.clock() + LEASE


# -- POST /v1/developer/webhook-endpoints/{id}/test ---------------------------------------------


async def _create_endpoint(api: Api, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = await api.post(
        "/v1/developer/webhook-endpoints",
        json={"label": "test me", "url": url, "events": events or ["telephony.complete"]},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_test_endpoint_sends_one_signed_event_and_records_it(
    api: Api, receiver: ScriptedReceiver
) -> None:
    endpoint = await _create_endpoint(api, receiver.on("/t", raw_answer("ok")))
    response = await api.post(f"/v1/developer/webhook-endpoints/{endpoint['id']}/test")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"event_id", "event_type", "status", "success", "response_code", "error"}
    assert body["event_type"] == "webhook.test"
    assert (body["status"], body["success"], body["response_code"], body["error"]) == (
        "delivered",
        True,
        200,
        None,
    )
    [request] = receiver.requests_to("/t")
    assert request.json()["type"] == "webhook.test"
    assert request.json()["data"]["endpoint_id"] == endpoint["id"]
    assert request.headers["x-thunderphone-event-id"] == body["event_id"]
    assert thunderphone.verify_signature(
        request.headers["x-thunderphone-signature-v2"],
        secret=endpoint["secret"],
        method="POST",
        path=request.raw_path,
        body=request.body,
    )
    page = (await api.get("/v1/developer/webhook-deliveries?event_type=webhook.test")).json()
    [delivery] = page["results"]
    assert delivery["event_id"] == body["event_id"]
    assert delivery["status"] == "delivered"
    assert delivery["attempt_count"] == 1
    assert delivery["endpoint_id"] == endpoint["id"]
    assert delivery["next_retry_at"] is None


async def test_test_endpoint_reports_a_failure_without_retrying(
    api: Api, receiver: ScriptedReceiver
) -> None:
    endpoint = await _create_endpoint(api, receiver.on("/t", raw_answer("nope", 500)))
    response = await api.post(
        f"/v1/developer/webhook-endpoints/{endpoint['id']}/test",
        json={"event_type": "telephony.complete"},
    )
    body = response.json()
    assert body["event_type"] == "telephony.complete"
    assert (body["status"], body["success"], body["response_code"]) == ("failed", False, 500)
    assert "500" in body["error"]
    assert receiver.requests_to("/t")[0].json()["type"] == "telephony.complete"
    page = (await api.get(f"/v1/developer/webhook-deliveries?endpoint_id={endpoint['id']}")).json()
    assert [d["status"] for d in page["results"]] == ["failed"]


async def test_test_endpoint_reaches_a_disabled_endpoint_and_keeps_the_status_rules(
    api: Api, receiver: ScriptedReceiver
) -> None:
    """A test may probe a disabled endpoint (without enabling it); a 410 from it disables."""
    url = receiver.on("/t", in_turn(raw_answer("ok"), raw_answer("gone", 410)))
    endpoint = await _create_endpoint(api, url)
    path = f"/v1/developer/webhook-endpoints/{endpoint['id']}"
    assert (await api.patch(path, json={"status": "disabled"})).json()["status"] == "disabled"
    first = (await api.post(f"{path}/test")).json()
    assert first["success"] is True
    assert (await api.get(path)).json()["status"] == "disabled"  # only PATCH re-enables
    assert (await api.patch(path, json={"status": "active"})).json()["status"] == "active"
    second = (await api.post(f"{path}/test")).json()
    assert (second["success"], second["response_code"]) == (False, 410)
    assert (await api.get(path)).json()["status"] == "disabled"


async def test_test_endpoint_reports_a_connection_failure(api: Api) -> None:
    endpoint = await _create_endpoint(api, f"http://127.0.0.1:{free_port()}/nobody")
    body = (await api.post(f"/v1/developer/webhook-endpoints/{endpoint['id']}/test")).json()
    assert (body["success"], body["response_code"], body["status"]) == (False, None, "failed")
    assert body["error"].startswith("connection")


@pytest.mark.parametrize(
    "payload",
    [
        {"event_type": "call.complete"},
        {"event_type": "nope"},
        {"event_type": 5},
        {"event_type": None},
        {"other": 1},
        [],
    ],
)
async def test_test_endpoint_refuses_unknown_event_types(
    api: Api, receiver: ScriptedReceiver, payload: Any
) -> None:
    endpoint = await _create_endpoint(api, receiver.on("/t", raw_answer("ok")))
    response = await api.post(
        f"/v1/developer/webhook-endpoints/{endpoint['id']}/test", json=payload
    )
    assert response.status_code == 400, response.text
    assert receiver.requests == []


async def test_test_endpoint_of_another_organization_is_404(api: Api) -> None:
    response = await api.post(
        "/v1/developer/webhook-endpoints/00000000-0000-0000-0000-000000000000/test"
    )
    assert response.status_code == 404


async def test_serve_delivers_queued_events_in_process(
    api: Api, receiver: ScriptedReceiver, app_settings: Any
) -> None:
    """The app's lifespan runs a dispatcher: a queued event leaves without any worker."""
    endpoint = await _create_endpoint(api, receiver.on("/live", raw_answer("ok")))
    db = Database(app_settings.resolved_database_url)
    try:
        async with db.session() as session:
            org_id = (await session.execute(select(Organization.id))).scalar_one()
            [row] = await enqueue_event(
                session,
                org_id=org_id,
                legacy_type=None,
                endpoint_type="telephony.complete",
                data=COMPLETE,
                call_id=None,
                now=utcnow(),
            )
            await session.commit()
        for _ in range(200):
            if receiver.requests_to("/live"):
                break
            await asyncio.sleep(0.05)
        [request] = receiver.requests_to("/live")
        assert request.headers["x-thunderphone-event-id"] == row.event_id
        assert thunderphone.verify_signature(
            request.headers["x-thunderphone-signature-v2"],
            secret=endpoint["secret"],
            method="POST",
            path=request.raw_path,
            body=request.body,
        )
    finally:
        await db.dispose()
