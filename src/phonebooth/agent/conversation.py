"""The turn loop: caller turns in, the model's reply streamed out, tools run, transcript kept.

Independent of audio: the simulated carrier drives it with text, the voice pipeline with
recognized speech. Time comes from an injected millisecond clock (since the call started).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from phonebooth.agent.events import (
    AgentText,
    AgentTurnEnd,
    EndRequested,
    EventSink,
    ToolFinished,
    ToolStarted,
    TranscriptRow,
    TurnLatency,
)
from phonebooth.agent.tool_guards import MAX_STEPS_PER_TURN
from phonebooth.agent.tools import ToolOutcome, ToolRequest, ToolRunner
from phonebooth.contract.agent_config import AgentConfig
from phonebooth.providers.llm.base import (
    LLM,
    Finished,
    LLMError,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
)

__all__ = ["APOLOGY", "END_CALL", "GOODBYE", "Conversation"]

log = logging.getLogger("phonebooth.agent")

END_CALL = "end_call"
APOLOGY = (
    "I'm sorry, I'm having technical trouble and can't help right now. Please call back later."
)
GOODBYE = "Thank you for calling. Goodbye!"
CHECK_IN = "Are you still there?"
FILLER = "One moment, please."
FILLER_AFTER_S = 1.0
_GREETING_REQUEST = (
    "The call has just connected. Greet the caller in one short sentence, as your instructions "
    "say, and offer help."
)
_END_CALL_SPEC = ToolSpec(
    name=END_CALL,
    description=(
        "End the phone call. Call this after you have said goodbye, when the caller has what "
        "they need or asks to hang up."
    ),
    parameters={"type": "object", "properties": {}},
)


def _tool_specs(config: AgentConfig) -> list[ToolSpec]:
    specs = [
        ToolSpec(tool.function.name, tool.function.description, dict(tool.function.parameters))
        for tool in config.tools
    ]
    if all(spec.name != END_CALL for spec in specs):
        specs.append(_END_CALL_SPEC)
    return specs


class Conversation:
    """One call's dialogue with the model. Not safe to run two turns at once; the runtime
    serializes them."""

    def __init__(
        self,
        *,
        llm: LLM | None,
        model: str,
        config: AgentConfig,
        runner: ToolRunner,
        sink: EventSink,
        clock_ms: Callable[[], int],
    ) -> None:
        self.llm = llm
        self.model = model
        self.config = config
        self.runner = runner
        self.sink = sink
        self.clock_ms = clock_ms
        self.tools = _tool_specs(config)
        self.builtin_end_call = any(spec is _END_CALL_SPEC for spec in self.tools)
        self.messages: list[Message] = [Message("system", config.prompt)]
        self.ended = False

    async def say(self, text: str, *, ends_turn: bool = True, remember: bool = True) -> None:
        """Speak a fixed line (first message, check-in, filler, apology) without the model.

        A filler is not remembered: it sits between a tool call and its result, where the
        model's message format allows nothing else.
        """
        now = self.clock_ms()
        await self.sink.emit(AgentText(text))
        await self.sink.emit(TranscriptRow("assistant", text, now, self.clock_ms()))
        if ends_turn:
            await self.sink.emit(AgentTurnEnd())
        if remember:
            self.messages.append(Message("assistant", text))

    async def open(self, first_message: str | None) -> None:
        """The agent's opening turn: its first message, else a greeting the model writes."""
        if first_message:
            await self.say(first_message)
            return
        request = [*self.messages, Message("system", _GREETING_REQUEST)]
        await self._reply(self.clock_ms(), request_messages=request)

    async def check_in(self) -> None:
        await self.say(CHECK_IN)

    async def caller_turn(self, text: str, *, spoken_at_ms: int | None = None) -> None:
        """One caller turn, then the agent's reply (up to five model steps)."""
        now = self.clock_ms()
        start = spoken_at_ms if spoken_at_ms is not None else now
        await self.sink.emit(TranscriptRow("user", text, start, now))
        self.messages.append(Message("user", text))
        await self._reply(now)

    async def _reply(
        self, turn_started_ms: int, request_messages: list[Message] | None = None
    ) -> None:
        if self.llm is None:
            await self._fail("no language model is configured")
            return
        first_text_ms: float | None = None
        first_token_ms: float | None = None
        for step in range(MAX_STEPS_PER_TURN):
            messages = request_messages if request_messages is not None else self.messages
            request_messages = None
            try:
                text, calls, step_first_token, text_started = await self._one_step(messages)
            except LLMError as exc:
                log.warning("model failed: %s", exc.detail)
                await self._fail(exc.detail)
                return
            if first_token_ms is None:
                first_token_ms = step_first_token
            if first_text_ms is None and text_started is not None:
                first_text_ms = text_started - turn_started_ms
            self.messages.append(Message("assistant", text or None, tool_calls=calls))
            if not calls:
                break
            if await self._run_tools(calls, said_something=bool(text)):
                await self._turn_latency(first_text_ms, first_token_ms)
                return
            if step == MAX_STEPS_PER_TURN - 1:
                log.info("turn ended after %d model steps", MAX_STEPS_PER_TURN)
        await self.sink.emit(AgentTurnEnd())
        await self._turn_latency(first_text_ms, first_token_ms)

    async def _turn_latency(self, first_text_ms: float | None, first_token: float | None) -> None:
        await self.sink.emit(TurnLatency(first_text_ms, first_token))

    async def _one_step(
        self, messages: Sequence[Message]
    ) -> tuple[str, tuple[ToolCallRequest, ...], float | None, int | None]:
        """Stream one model answer; the assistant row holds what was actually sent out."""
        assert self.llm is not None
        sent: list[str] = []
        started_ms: int | None = None
        finished: Finished | None = None
        try:
            async for event in self.llm.chat(model=self.model, messages=messages, tools=self.tools):
                if isinstance(event, TextDelta):
                    if started_ms is None:
                        started_ms = self.clock_ms()
                    sent.append(event.text)
                    await self.sink.emit(AgentText(event.text))
                else:
                    finished = event
        finally:
            if sent:
                text = "".join(sent)
                await self.sink.emit(
                    TranscriptRow("assistant", text, started_ms or 0, self.clock_ms())
                )
        assert finished is not None
        return finished.text, finished.tool_calls, finished.first_token_ms, started_ms

    async def _run_tools(self, calls: tuple[ToolCallRequest, ...], *, said_something: bool) -> bool:
        """Run one step's tool calls; True when `end_call` ended the conversation."""
        end_call = [c for c in calls if c.name == END_CALL and self.builtin_end_call]
        customer = [c for c in calls if not (c.name == END_CALL and self.builtin_end_call)]
        for call in customer:
            await self.sink.emit(ToolStarted(call.name, _arguments(call.arguments_json)))
        step_started = self.clock_ms()
        requests = [ToolRequest(c.id, c.name, c.arguments_json) for c in customer]
        try:
            outcomes = {o.id: o for o in await self._run_with_filler(requests)} if requests else {}
        except asyncio.CancelledError:
            # A barge-in: the model's history must still answer every tool call it made.
            for call in calls:
                interrupted = json.dumps({"error": "interrupted"})
                self.messages.append(Message("tool", interrupted, tool_call_id=call.id))
            raise
        for call in calls:
            if call.id in outcomes:
                outcome = outcomes[call.id]
                await self._emit_outcome(outcome, step_started)
                result = outcome.result
            else:
                result = {"ok": True}
                now = self.clock_ms()
                await self.sink.emit(ToolStarted(call.name, _arguments(call.arguments_json)))
                await self.sink.emit(
                    ToolFinished(
                        call.name, _arguments(call.arguments_json), result, 0, now, now, sent=False
                    )
                )
            self.messages.append(
                Message("tool", json.dumps(result, ensure_ascii=False), tool_call_id=call.id)
            )
        if end_call:
            if not said_something:
                await self.say(GOODBYE)
            else:
                await self.sink.emit(AgentTurnEnd())
            self.ended = True
            await self.sink.emit(EndRequested("agent_end"))
            return True
        return False

    async def _run_with_filler(self, requests: list[ToolRequest]) -> list[ToolOutcome]:
        """Tools that take more than about a second get a short spoken filler meanwhile."""
        running = asyncio.ensure_future(self.runner.run_step(requests))
        try:
            done, _ = await asyncio.wait({running}, timeout=FILLER_AFTER_S)
            if not done:
                await self.say(FILLER, ends_turn=False, remember=False)
            return await running
        except asyncio.CancelledError:
            running.cancel()
            raise

    async def _emit_outcome(self, outcome: ToolOutcome, step_started: int) -> None:
        await self.sink.emit(
            ToolFinished(
                outcome.name,
                outcome.arguments,
                outcome.result,
                outcome.duration_ms,
                step_started,
                step_started + outcome.duration_ms,
                outcome.sent,
            )
        )

    async def _fail(self, why: str) -> None:
        """A model that cannot answer: apologise and end the call with `error`."""
        log.warning("ending the call: %s", why)
        await self.say(APOLOGY)
        self.ended = True
        await self.sink.emit(EndRequested("error"))


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text
