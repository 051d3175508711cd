"""The outbox dispatcher: claims due deliveries, sends them signed, records every attempt.

Several dispatchers (the one inside `phonebooth serve`, any number of `phonebooth worker`
processes) can share one database: claims are disjoint, and a claim held by a process that
died lapses after the lease, so every event is delivered at least once. Receivers deduplicate
with the event id, which is the same on every retry; the request id and the signature time are
fresh on every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.storage import outbox
from phonebooth.storage.db import Database
from phonebooth.storage.outbox import AttemptRecord, DeliveryStatus, SendTarget
from phonebooth.storage.tables import WebhookDelivery
from phonebooth.storage.webhook_config import get_endpoint
from phonebooth.webhooks.retry import (
    Classification,
    classify,
    next_attempt_at,
    parse_retry_after,
)
from phonebooth.webhooks.sender import send_signed
from phonebooth.webhooks.signing import serialize
from phonebooth.webhooks.url_policy import failure_reason

__all__ = ["DELIVERY_TIMEOUT", "Dispatcher", "TestSendResult"]

log = logging.getLogger("phonebooth.webhooks.dispatcher")

DELIVERY_TIMEOUT = 30.0  # contract 6: seconds for one attempt, connection included
_MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class TestSendResult:
    """The answer of `POST /v1/developer/webhook-endpoints/{id}/test`."""

    event_id: str
    event_type: str
    status: DeliveryStatus
    success: bool
    response_code: int | None
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "status": self.status,
            "success": self.success,
            "response_code": self.response_code,
            "error": self.error,
        }


@dataclass(frozen=True)
class _Attempt:
    """What one send produced, before the retry policy turns it into a row update."""

    url: str
    http_status: int | None
    failure_category: str | None
    error: str | None
    latency_ms: int | None
    started_at: datetime
    ended_at: datetime
    retry_after: timedelta | None


@dataclass(frozen=True)
class _Outcome:
    """An attempt with the row update it leads to, and the endpoint change to apply, if any."""

    row: WebhookDelivery
    attempt: _Attempt
    record: AttemptRecord
    endpoint_change: Classification | None


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 1] + "…"


class Dispatcher:
    """Delivers outbox rows; `run_once` for one batch, `run_forever` for a long-lived worker.

    At most `concurrency` sends are in flight, and a worker never claims more rows than it can
    start at once: a row claimed but left waiting behind slow receivers could outlive its lease
    and be sent twice.
    """

    def __init__(
        self,
        db: Database,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime],
        rng: Callable[[], float],
        concurrency: int = 8,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.db = db
        self.client = client
        self.clock = clock
        self.rng = rng
        self.concurrency = concurrency
        self.timeout = timeout
        self.stats: Counter[str] = Counter()  # attempts by resulting status, for progress output
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, poll_interval: float = 0.5) -> None:
        """Run `run_forever` as a background task of the running loop (`serve`'s lifespan)."""
        if self._task is not None:
            raise RuntimeError("the dispatcher is already running")
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self.run_forever(self._stop, poll_interval), name="phonebooth-dispatcher"
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming and give sends in flight `grace` seconds to finish; a no-op when idle.

        Sends still running after that are cancelled rather than holding up a shutdown for the
        full 30 s timeout: their rows stay claimed and are sent again once the lease lapses.
        """
        task, stop = self._task, self._stop
        if task is None or stop is None:
            return
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, never re-raises its cancellation
        finally:
            self._task = None
            self._stop = None

    async def run_once(self) -> int:
        """Claim up to `concurrency` due rows, deliver them all, return how many were tried.

        The batch's outcomes are recorded in one transaction: one commit for the batch instead of
        one per row is most of what a worker costs the database.
        """
        claimed = await self._claim(self.concurrency)
        if not claimed:
            return 0
        outcomes = await asyncio.gather(
            *(self._attempt(row, target, final=False) for row, target in claimed)
        )
        await self._record_safely(outcomes)
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        """Keep every send slot busy while rows are due; poll when idle; return once `stop` is set.

        On stop, sends already in flight are allowed to finish (each is bounded by the timeout),
        so a clean shutdown leaves no row claimed.
        """
        in_flight: set[asyncio.Task[None]] = set()
        stop_wait = asyncio.create_task(stop.wait())
        graceful = False
        try:
            while not stop.is_set():
                free = self.concurrency - len(in_flight)
                claimed: list[tuple[WebhookDelivery, SendTarget | str]] = []
                if free > 0:
                    try:
                        claimed = await self._claim(free)
                    except Exception:  # a database hiccup must not kill the worker
                        log.exception("claiming due webhook deliveries failed")
                for row, target in claimed:
                    in_flight.add(asyncio.create_task(self._deliver(row, target)))
                if claimed and len(in_flight) < self.concurrency:
                    continue  # more may be due right now
                waiters: set[asyncio.Future[Any]] = {stop_wait, *in_flight}
                await asyncio.wait(waiters, timeout=poll_interval, return_when=FIRST_COMPLETED)
                in_flight = {task for task in in_flight if not task.done()}
            graceful = True
        finally:
            stop_wait.cancel()
            if not graceful:  # cancelled: abandon the sends; their leases will lapse
                for task in in_flight:
                    task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def send_test(self, org_id: int, endpoint_id: str, event_type: str) -> TestSendResult:
        """One attempt of a test event to one endpoint, recorded like any delivery, no retries.

        It goes through the same sender, signing and bookkeeping as real events, so a passing
        test means real events will pass too (a 2xx also returns a `failing` endpoint to active).
        """
        now = self.clock()
        async with self.db.session() as session:
            endpoint = await get_endpoint(session, org_id, endpoint_id)
            data = {
                "endpoint_id": endpoint.id,
                "message": "This is a test event sent by phonebooth.",
                "test": True,
                "sent_at": now.isoformat().replace("+00:00", "Z"),
            }
            row = outbox.new_test_delivery(endpoint, event_type=event_type, data=data)
            targets = await outbox.load_targets(session, [row], now, include_disabled=True)
        outcome = await self._attempt(row, targets[row.id], final=True)
        async with self.db.session() as session:
            await outbox.store_attempted(session, row, outcome.record)
            await self._note_endpoint(session, outcome)
            await session.commit()
        self.stats[outcome.record.status] += 1
        return TestSendResult(
            event_id=row.event_id,
            event_type=event_type,
            status=outcome.record.status,
            success=outcome.record.status == "delivered",
            response_code=outcome.record.http_status,
            error=outcome.attempt.error,
        )

    async def _claim(self, limit: int) -> list[tuple[WebhookDelivery, SendTarget | str]]:
        now = self.clock()
        async with self.db.session() as session:
            rows = await outbox.claim_due(session, now, limit)
            if not rows:
                return []
            targets = await outbox.load_targets(session, rows, now)
        return [(row, targets[row.id]) for row in rows]

    async def _deliver(self, row: WebhookDelivery, target: SendTarget | str) -> None:
        await self._record_safely([await self._attempt(row, target, final=False)])

    async def _send(self, row: WebhookDelivery, target: SendTarget) -> _Attempt:
        body = serialize(row.payload)
        started_at = self.clock()
        started = time.perf_counter()
        http_status: int | None = None
        category: str | None = None
        error: str | None = None
        retry_after: timedelta | None = None
        try:
            async with asyncio.timeout(self.timeout):
                exchange = await send_signed(
                    self.client,
                    method="POST",
                    url=target.url,
                    body=body,
                    secrets=target.secrets,
                    timestamp=int(started_at.timestamp()),
                    event_id=row.event_id,
                )
            http_status = exchange.status_code
            if not 200 <= http_status <= 299:
                category, error = "http_error", f"receiver answered HTTP {http_status}"
                retry_after = parse_retry_after(exchange.headers.get("retry-after"), started_at)
        except TimeoutError:
            category, error = "timeout", f"no answer within {self.timeout:g} s"
        except Exception as exc:  # the policy's own errors, httpx errors, anything unexpected
            category = failure_reason(exc)
            error = _short(f"{category}: {exc}" if str(exc) else category)
        latency = round((time.perf_counter() - started) * 1000)
        return _Attempt(
            target.url,
            http_status,
            category,
            error,
            latency,
            started_at,
            self.clock(),
            retry_after,
        )

    async def _attempt(
        self, row: WebhookDelivery, target: SendTarget | str, *, final: bool
    ) -> _Outcome:
        """Send (unless the receiver is gone) and apply the retry policy; no database access."""
        if isinstance(target, str):  # no receiver any more: nothing to send, stop retrying
            now = self.clock()
            attempt = _Attempt(row.url, None, None, target, None, now, now, None)
            verdict: Classification = "gone"
        else:
            attempt = await self._send(row, target)
            verdict = classify(attempt.http_status, attempt.failure_category)
        next_retry: datetime | None = None
        status: DeliveryStatus
        if verdict == "delivered":
            status = "delivered"
        elif verdict == "gone" or final:
            status = "failed"
        else:
            next_retry = next_attempt_at(
                row.first_attempt_at or attempt.started_at,
                row.attempt_count + 1,
                attempt.ended_at,
                self.rng,
                attempt.retry_after,
            )
            status = "failed" if next_retry is None else "retrying"
        record = AttemptRecord(
            status=status,
            url=attempt.url,
            http_status=attempt.http_status,
            failure_category=attempt.failure_category,
            errors=None if attempt.error is None else [attempt.error],
            latency_ms=attempt.latency_ms,
            attempted_at=attempt.started_at,
            next_retry_at=next_retry,
        )
        endpoint_change = (
            isinstance(target, SendTarget)
            and row.endpoint_id is not None
            and target.may_change_endpoint(verdict, attempt.ended_at)
        )
        return _Outcome(row, attempt, record, verdict if endpoint_change else None)

    async def _record(self, outcomes: Sequence[_Outcome]) -> None:
        """Store the attempts (and endpoint status changes) in one transaction."""
        async with self.db.session() as session:
            stored = [await outbox.record_attempt(session, o.row, o.record) for o in outcomes]
            for outcome, kept in zip(outcomes, stored, strict=True):
                if kept:
                    await self._note_endpoint(session, outcome)
            await session.commit()
        for outcome, kept in zip(outcomes, stored, strict=True):
            if kept:
                self.stats[outcome.record.status] += 1
            else:
                log.warning(
                    "delivery %s was claimed again elsewhere; attempt not recorded", outcome.row.id
                )

    @staticmethod
    async def _note_endpoint(session: AsyncSession, outcome: _Outcome) -> None:
        if outcome.endpoint_change is not None and outcome.row.endpoint_id is not None:
            await outbox.note_endpoint_outcome(
                session, outcome.row.endpoint_id, outcome.endpoint_change, outcome.attempt.ended_at
            )

    async def _record_safely(self, outcomes: Sequence[_Outcome]) -> None:
        try:
            await self._record(outcomes)
        except Exception:  # the rows stay claimed; when the lease lapses they are sent again
            log.exception("recording %d webhook attempt(s) failed", len(outcomes))
