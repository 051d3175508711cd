"""Call setup in one place (contract section 1): lookup, limit, record, ask, validate, fall back."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.calls.decide import Decision, ExchangeOutcome, IncomingExchange
from phonebooth.calls.registry import LiveCall, LiveCalls
from phonebooth.calls.report import call_json, complete_data
from phonebooth.contract.agent_config import AgentConfig, redact_tools
from phonebooth.core.ids import IdGenerator
from phonebooth.storage import calls as calls_repo
from phonebooth.storage.db import Database
from phonebooth.storage.deliveries import record_delivery
from phonebooth.storage.numbers import find_route
from phonebooth.storage.outbox import enqueue_event
from phonebooth.storage.receivers import Receiver, endpoint_event_type, load_receivers
from phonebooth.storage.tables import (
    Agent,
    Call,
    Organization,
    PhoneNumber,
    TranscriptEntry,
    utcnow,
)
from phonebooth.storage.webhook_config import active_secrets

__all__ = ["CallRefused", "CallService", "StartedCall"]

log = logging.getLogger("phonebooth.calls")

Direction = Literal["inbound", "web"]
ConfigSource = Literal["webhook", "default", "none"]


class CallRefused(Exception):
    """Refused at the transport, nothing recorded: `unknown_number` or `busy`."""

    def __init__(self, reason: Literal["unknown_number", "busy"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StartedCall:
    """Everything the conversation needs once setup is done."""

    call_id: int
    org_id: int
    direction: Direction
    from_number: str
    to_number: str
    config_source: ConfigSource
    config: AgentConfig | None
    config_error: dict[str, Any] | None
    webhook_latency_ms: int | None
    agent_id: int | None
    speak_order: str
    first_message: str | None
    tool_secrets: tuple[str, ...]
    live: LiveCall

    def setup_message(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "config_source": self.config_source,
            "config_error": self.config_error,
            "config": None if self.config is None else _redacted(self.config),
            "webhook_latency_ms": self.webhook_latency_ms,
            "speak_order": self.speak_order,
        }


def _redacted(config: AgentConfig) -> dict[str, Any]:
    body = config.as_json()
    body["tools"] = redact_tools(body["tools"])
    return body


def _agent_config(agent: Agent) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "prompt": agent.prompt,
            "voice": agent.voice,
            "product": agent.product,
            "background_track": agent.background_track,
            "tools": agent.tools or [],
        }
    )


class CallService:
    """Owns the lifecycle of calls in this process: start, end, and the start-up sweep."""

    def __init__(
        self,
        *,
        db: Database,
        client: httpx.AsyncClient,
        registry: LiveCalls,
        incoming_timeout: float,
        ids: IdGenerator | None = None,
        wall_clock: Callable[[], datetime] = utcnow,
        recording_url: Callable[[Call], str | None] | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.registry = registry
        self.incoming_timeout = incoming_timeout
        self.ids = ids or IdGenerator()
        self.wall_clock = wall_clock
        self.recording_url = recording_url or (lambda _call: None)
        self._background: set[asyncio.Task[None]] = set()
        self._pending: dict[int, asyncio.Task[None]] = {}

    async def start(
        self, *, org_id: int | None, to_number: str, from_number: str, direction: Direction
    ) -> StartedCall:
        """Set a call up, or raise `CallRefused` having recorded nothing.

        No database connection is held while the receivers are asked (a small pool must not
        limit how many calls wait on slow webhooks), and the decision is written behind the
        caller's back: the transport learns the configuration as soon as it is decided.
        """
        async with self.db.session() as session:
            route = await find_route(session, to_number)
            if route is None or (org_id is not None and route[0].org_id != org_id):
                raise CallRefused(
                    "unknown_number", f"{to_number} is not a number of this installation"
                )
            number, org, default_agent = route
            if not self.registry.try_reserve():
                raise CallRefused("busy", "the installation is at its concurrent-call limit")
            try:
                call, receivers = await self._record_call(
                    session, number, to_number, from_number, direction
                )
            except BaseException:
                self.registry.release()
                raise
        self.registry.bind(call.id)
        try:
            decision = await self._ask(call, receivers)
            return self._configure(call, decision, org, default_agent, direction)
        except BaseException:
            self.registry.finish(call.id)
            raise

    async def _record_call(
        self,
        session: AsyncSession,
        number: PhoneNumber,
        to_number: str,
        from_number: str,
        direction: Direction,
    ) -> tuple[Call, list[Receiver]]:
        now = self.wall_clock()
        call = Call(
            id=self.ids.next_id(),
            org_id=number.org_id,
            phone_number_id=number.id,
            direction=direction,
            from_number=from_number,
            to_number=to_number,
            status="in_progress",
            start_time=now,
        )
        await calls_repo.insert_call(session, call)
        receivers = await load_receivers(
            session,
            number.org_id,
            legacy_type="call.incoming",
            endpoint_type=endpoint_event_type(direction, "incoming"),
            blocking=True,
            now=now,
        )
        await session.commit()
        return call, receivers

    async def _ask(self, call: Call, receivers: list[Receiver]) -> Decision:
        data: dict[str, Any] = {
            "call_id": call.id,
            "from_number": call.from_number,
            "to_number": call.to_number,
        }
        exchange = IncomingExchange(
            self.client, receivers, data, timeout=self.incoming_timeout, wall_clock=self.wall_clock
        )
        decision = await exchange.decide()
        if receivers:
            self._spawn(self._record_deliveries(call.org_id, call.id, exchange))
        return decision

    def _configure(
        self,
        call: Call,
        decision: Decision,
        org: Organization,
        default_agent: Agent | None,
        direction: Direction,
    ) -> StartedCall:
        """Apply the decision: webhook answer, else the default agent, else end the call."""
        org_secrets = active_secrets(
            org.webhook_secret,
            org.webhook_previous_secret,
            org.webhook_previous_secret_expires_at,
            self.wall_clock(),
        )
        config: AgentConfig | None
        if decision.winner is not None:
            source: ConfigSource = "webhook"
            config = decision.winner.verdict.config
            tool_secrets = decision.winner.receiver.secrets
            agent_id = None
        elif default_agent is not None:
            source = "default"
            config = _agent_config(default_agent)
            tool_secrets = tuple(org_secrets)
            agent_id = default_agent.id
        else:
            source, config, tool_secrets, agent_id = "none", None, tuple(org_secrets), None
            log.warning(
                "call %s has no configuration; ending it", call.id, extra={"call_id": call.id}
            )
        winner = decision.winner
        fields: dict[str, Any] = {
            "config_source": source,
            "config": None if config is None else config.as_json(),
            "config_error": decision.config_error(),
            "config_receiver": None if winner is None else winner.receiver.receiver_id,
            "webhook_latency_ms": decision.latency_ms if decision.deciding or winner else None,
            "product": None if config is None else config.product,
            "voice": None if config is None else config.voice,
            "agent_id": agent_id,
        }
        if config is None:
            fields.update(status="failed", end_reason="error", end_time=self.wall_clock())
        self._pending[call.id] = self._spawn(self._store(call.id, fields))
        live = LiveCall(call.id, call.org_id)
        if config is not None:
            self.registry.add(live)
        return StartedCall(
            call_id=call.id,
            org_id=call.org_id,
            direction=direction,
            from_number=call.from_number,
            to_number=call.to_number,
            config_source=source,
            config=config,
            config_error=fields["config_error"],
            webhook_latency_ms=fields["webhook_latency_ms"],
            agent_id=agent_id,
            speak_order=default_agent.inbound_speak_order if default_agent else "agent_first",
            first_message=(
                default_agent.first_message if source == "default" and default_agent else None
            ),
            tool_secrets=tuple(tool_secrets),
            live=live,
        )

    async def _store(self, call_id: int, fields: dict[str, Any]) -> None:
        async with self.db.session() as session:
            await calls_repo.update_call(session, call_id, fields)
            await session.commit()

    def record_voice(self, call_id: int, used: str | None, substituted: bool) -> None:
        """Written behind the call's back (like the setup decision), before its end."""
        previous = self._pending.get(call_id)

        async def write() -> None:
            if previous is not None:
                await previous
            async with self.db.session() as session:
                await calls_repo.update_call(
                    session, call_id, {"voice_used": used, "voice_substituted": substituted}
                )
                await session.commit()

        self._pending[call_id] = self._spawn(write())

    async def append_transcript(self, call_id: int, rows: list[dict[str, Any]]) -> None:
        async with self.db.session() as session:
            await calls_repo.add_transcript_entries(session, call_id, rows)
            await session.commit()

    async def record_tool(
        self, call: StartedCall, rows: list[dict[str, Any]], event: dict[str, Any]
    ) -> None:
        """A tool execution's transcript rows and its `*.tool` event, in one transaction."""
        async with self.db.session() as session:
            await calls_repo.add_transcript_entries(session, call.call_id, rows)
            await enqueue_event(
                session,
                org_id=call.org_id,
                legacy_type=None,
                endpoint_type=endpoint_event_type(call.direction, "tool"),
                data=event,
                call_id=call.call_id,
                now=self.wall_clock(),
            )
            await session.commit()

    async def end(
        self,
        call_id: int,
        end_reason: str,
        *,
        latency: dict[str, Any] | None = None,
        recording_path: str | None = None,
    ) -> dict[str, Any]:
        """Close the call once and queue its `call.complete` in the same transaction.

        Later calls are no-ops that return the call object as it is. `recording_path` (the
        closed recorder's file) is stored first, so `call.complete` carries its link.
        """
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            await pending  # the setup decision is written before the end
        async with self.db.session() as session:
            closed = await calls_repo.finish_call(
                session, call_id, end_reason=end_reason, end_time=self.wall_clock()
            )
            if closed and latency is not None:
                await calls_repo.update_call(session, call_id, {"latency": latency})
            if recording_path is not None:
                await calls_repo.update_call(session, call_id, {"recording_path": recording_path})
            call = await calls_repo.get_call_any_org(session, call_id)
            assert call is not None
            await session.refresh(call)
            entries = await calls_repo.transcript(session, call_id)
            if closed:
                await self._queue_complete(session, call, entries)
            await session.commit()
        live = self.registry.get(call_id)
        self.registry.finish(call_id)
        if live is not None:
            live.ended.set()
        return call_json(call, entries, recording_url=self.recording_url(call))

    async def _queue_complete(
        self, session: AsyncSession, call: Call, entries: list[TranscriptEntry]
    ) -> None:
        direction: Direction = "web" if call.direction == "web" else "inbound"
        await enqueue_event(
            session,
            org_id=call.org_id,
            legacy_type="call.complete",
            endpoint_type=endpoint_event_type(direction, "complete"),
            data=complete_data(call, entries, recording_url=self.recording_url(call)),
            call_id=call.id,
            now=self.wall_clock(),
        )

    async def sweep_interrupted(self) -> list[int]:
        """Close calls a crashed process left `in_progress` as failed / error (contract 1.10),
        each with its `call.complete`."""
        async with self.db.session() as session:
            ids = await calls_repo.open_call_ids(session)
            for call_id in ids:
                if await calls_repo.finish_call(session, call_id, end_reason="error"):
                    call = await calls_repo.get_call_any_org(session, call_id)
                    assert call is not None
                    await session.refresh(call)
                    entries = await calls_repo.transcript(session, call_id)
                    await self._queue_complete(session, call, entries)
            await session.commit()
        if ids:
            log.warning("closed %d call(s) left in progress by an earlier process", len(ids))
        return ids

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _record_deliveries(
        self, org_id: int, call_id: int, exchange: IncomingExchange
    ) -> None:
        outcomes: list[ExchangeOutcome] = await exchange.finished()
        event_id = str(uuid.uuid4())
        async with self.db.session() as session:
            for outcome in outcomes:
                receiver = outcome.receiver
                verdict = outcome.verdict
                await record_delivery(
                    session,
                    org_id=org_id,
                    event_id=event_id,
                    call_id=call_id,
                    **receiver.delivery_fields(),
                    blocking=True,
                    payload=None,
                    status=verdict.delivery_status,
                    attempt_count=1,
                    http_status=verdict.http_status,
                    failure_category=verdict.failure_category,
                    errors=list(verdict.errors) or None,
                    latency_ms=outcome.latency_ms,
                    attempted_at=outcome.attempted_at,
                )
            await session.commit()

    async def drain(self) -> None:
        """Wait for background bookkeeping (delivery records); used at shutdown and in tests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
