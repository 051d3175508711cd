"""One live call's runtime: the conversation, its timers, and the record it leaves.

Transports feed caller turns in and get agent messages out through `send`; everything the
conversation emits is also written, in order, by a single writer task that never holds up
the conversation. The call ends once: caller hang-up, `end_call`, the API, a timer, or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from phonebooth.agent.conversation import Conversation
from phonebooth.agent.events import (
    AgentEvent,
    AgentText,
    AgentTurnEnd,
    EndRequested,
    ToolFinished,
    ToolStarted,
    TranscriptRow,
    TurnLatency,
)
from phonebooth.agent.tools import ToolRunner
from phonebooth.calls.setup import CallService, StartedCall
from phonebooth.providers.llm.base import LLM

__all__ = ["CallLimits", "CallSession", "Send", "latency_summary"]

log = logging.getLogger("phonebooth.calls.session")

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class CallLimits:
    max_call_seconds: float = 1800
    silence_checkin_seconds: float = 10
    silence_hangup_seconds: float = 30
    max_checkins: int = 2


def latency_summary(turns: list[TurnLatency]) -> dict[str, Any]:
    """Per turn figures and their p50 over the call (contract section 6 `latency`)."""
    rows = [asdict(turn) for turn in turns]
    keys = [
        "end_of_speech_to_first_audio_ms",
        "endpointing_ms",
        "stt_ms",
        "llm_first_token_ms",
        "tts_first_audio_ms",
    ]
    p50: dict[str, float | None] = {}
    for key in keys:
        values = [row[key] for row in rows if row[key] is not None]
        p50[key] = round(statistics.median(values), 1) if values else None
    return {"turns": [{k: _round(row[k]) for k in keys} for row in rows], "p50": p50}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _tool_event_data(call_id: int, event: ToolFinished) -> dict[str, Any]:
    data: dict[str, Any] = {
        "call_id": call_id,
        "name": event.name,
        "arguments": event.arguments,
        "duration_ms": event.duration_ms,
    }
    result = event.result
    if isinstance(result, dict) and "error" in result and not event.sent:
        data["error"] = result["error"]
    else:
        data["response"] = result
    return data


class CallSession:
    """Drives one configured call until it ends; `run()` returns the end reason."""

    def __init__(
        self,
        calls: CallService,
        call: StartedCall,
        *,
        llm: LLM | None,
        model: str,
        client: httpx.AsyncClient,
        send: Send,
        limits: CallLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert call.config is not None
        self.calls = calls
        self.call = call
        self.send = send
        self.limits = limits
        self._clock = clock
        self._started = clock()
        self._end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._turns: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._writes: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self._latencies: list[TurnLatency] = []
        self._last_caller_activity = self._started
        self._turn_task: asyncio.Task[None] | None = None
        self._checkins = 0
        self.runner = ToolRunner(
            client, tools=call.config.tools, call_id=call.call_id, secrets=call.tool_secrets
        )
        self.conversation = Conversation(
            llm=llm,
            model=model,
            config=call.config,
            runner=self.runner,
            sink=self,
            clock_ms=self.now_ms,
        )
        call.live.on_hangup = self.end_soon

    def now_ms(self) -> int:
        return round((self._clock() - self._started) * 1000)

    # -- inputs from the transport and the API ------------------------------------------------

    def caller_text(self, text: str) -> None:
        self._last_caller_activity = self._clock()
        self._checkins = 0
        self._turns.put_nowait((text, self.now_ms()))

    def end_soon(self, reason: str) -> None:
        if not self._end.done():
            self._end.set_result(reason)

    # -- the sink the conversation emits to ----------------------------------------------------

    async def emit(self, event: AgentEvent) -> None:
        if isinstance(event, AgentText):
            await self.send({"type": "agent_text", "delta": event.delta})
        elif isinstance(event, AgentTurnEnd):
            self._last_caller_activity = self._clock()  # silence counts from the agent's turn
            await self.send({"type": "agent_turn_end"})
        elif isinstance(event, ToolStarted):
            await self.send({"type": "tool_call", "name": event.name, "arguments": event.arguments})
        elif isinstance(event, ToolFinished):
            await self.send({"type": "tool_result", "name": event.name, "result": event.result})
            self._writes.put_nowait(event)
        elif isinstance(event, TranscriptRow):
            self._writes.put_nowait(event)
        elif isinstance(event, TurnLatency):
            self._latencies.append(event)
        elif isinstance(event, EndRequested):
            self.end_soon(event.reason)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> str:
        writer = asyncio.create_task(self._write_all())
        talker = asyncio.create_task(self._talk())
        timers = asyncio.create_task(self._watch_time())
        try:
            reason = await self._end
        finally:
            self.runner.mark_ended()
            for task in (talker, timers):
                task.cancel()
            for task in (talker, timers):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for outcome in await self.runner.drain():  # requests already sent finish
                log.info("tool %s finished after the call ended", outcome.name)
            self.ending()
            self._writes.put_nowait(None)
            await writer
        return reason

    async def finish(self, reason: str) -> dict[str, Any]:
        return await self.calls.end(
            self.call.call_id,
            reason,
            latency=latency_summary(self._latencies),
            recording_path=await self.close_recording(),
        )

    async def close_recording(self) -> str | None:
        """Hook: a voice call finishes its recording here (text calls have none)."""
        return None

    async def _talk(self) -> None:
        try:
            if self.call.speak_order == "agent_first":
                self.agent_turn_starting()
                await self._run_turn(self.conversation.open(self.call.first_message))
            while not self.conversation.ended:
                text, spoken_at = await self._turns.get()
                self.agent_turn_starting()
                await self._run_turn(self.conversation.caller_turn(text, spoken_at_ms=spoken_at))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("conversation failed", extra={"call_id": self.call.call_id})
            self.end_soon("error")

    async def _run_turn(self, turn: Coroutine[Any, Any, None]) -> None:
        """One agent turn as its own task, so a barge-in can cancel it and the call goes on."""
        self._turn_task = asyncio.create_task(turn)
        try:
            await asyncio.wait({self._turn_task})
        except asyncio.CancelledError:
            self._turn_task.cancel()
            raise
        task, self._turn_task = self._turn_task, None
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    def interrupt_turn(self) -> None:
        """The caller barged in: stop the agent's turn (requests already sent still finish)."""
        if self._turn_task is not None:
            self._turn_task.cancel()

    def ending(self) -> None:
        """Hook: the call is over; last records may still be queued for the writer."""

    def agent_turn_starting(self) -> None:
        """Hook for the voice session: a new agent turn's latency starts being measured."""

    async def _watch_time(self) -> None:
        limits = self.limits
        while True:
            now = self._clock()
            if now - self._started >= limits.max_call_seconds:
                self.end_soon("timeout")
                return
            silent = now - self._last_caller_activity
            if self._turns.empty() and silent >= limits.silence_hangup_seconds:
                self.end_soon("timeout")
                return
            due = limits.silence_checkin_seconds * (self._checkins + 1)
            if self._turns.empty() and self._checkins < limits.max_checkins and silent >= due:
                self._checkins += 1
                activity = self._last_caller_activity
                await self.conversation.check_in()
                self._last_caller_activity = activity  # a check-in does not reset the silence
            await asyncio.sleep(0.05)

    async def _write_all(self) -> None:
        """Persist transcript rows and tool events in the order they happened."""
        while (event := await self._writes.get()) is not None:
            try:
                await self._write(event)
            except Exception:
                log.exception(
                    "could not record %s",
                    type(event).__name__,
                    extra={"call_id": self.call.call_id},
                )

    async def _write(self, event: AgentEvent) -> None:
        if isinstance(event, TranscriptRow):
            row = {
                "role": event.role,
                "content_type": "text/plain",
                "content": event.content,
                "start_ms": event.start_ms,
                "end_ms": event.end_ms,
            }
            await self.calls.append_transcript(self.call.call_id, [row])
        elif isinstance(event, ToolFinished):
            rows = [
                {
                    "role": "tool_call",
                    "content_type": "application/json",
                    "content": {"name": event.name, "arguments": event.arguments},
                    "start_ms": event.start_ms,
                    "end_ms": event.start_ms,
                },
                {
                    "role": "tool_response",
                    "content_type": "application/json",
                    "content": event.result,
                    "start_ms": event.end_ms,
                    "end_ms": event.end_ms,
                },
            ]
            await self.calls.record_tool(
                self.call, rows, _tool_event_data(self.call.call_id, event)
            )
