"""The LLM seam: one public `chat()` that owns the policy over one private `_chat_impl()` hook.

Providers only turn a request into a stream of text deltas and completed tool calls. Timing the
first token, mapping failures into `LLMError` and closing the stream with exactly one
`Finished` live here once, so the turn loop sees the same behaviour from every engine.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from phonebooth.core.errors import PhoneboothError

__all__ = [
    "LLM",
    "ChatEvent",
    "Finished",
    "ImplEvent",
    "LLMCapabilities",
    "LLMError",
    "LLMUnavailable",
    "Message",
    "TextDelta",
    "ToolCallRequest",
    "ToolSpec",
    "status_is_retryable",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is its JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ToolCallRequest:
    """A complete tool call as the model asked for it; arguments stay raw JSON text."""

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Message:
    """One conversation entry, provider neutral."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply, streamed as soon as the engine produces it."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The last event of every successful chat: the whole text and the tool calls."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    first_token_ms: float | None


@dataclass(frozen=True)
class LLMCapabilities:
    """What an engine can do; the pipeline branches on this, never on classes."""

    streaming: bool
    tool_calls: bool


ChatEvent = TextDelta | Finished
ImplEvent = TextDelta | ToolCallRequest


def status_is_retryable(status: int) -> bool:
    """Server trouble, timeouts and rate limits may pass; other client errors will not."""
    return status >= 500 or status in (408, 429)


class LLMError(PhoneboothError):
    """A chat failed. `retryable` tells a fallback or the turn loop whether trying again helps."""

    def __init__(self, detail: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.status_code = status_code


class LLMUnavailable(LLMError):
    """The engine cannot run here at all (missing extra, model or setting); never retryable."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


class LLM(ABC):
    """Base of every engine. Subclasses set `name` and `capabilities` and fill `_chat_impl`."""

    name: str
    capabilities: LLMCapabilities

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock

    async def chat(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ChatEvent, None]:
        """Stream the reply: `TextDelta`s, then exactly one `Finished`, or raise `LLMError`.

        Closing the iterator early (a barge-in) cancels the request in the provider.
        """
        started = self._clock()
        first_token_ms: float | None = None
        parts: list[str] = []
        calls: list[ToolCallRequest] = []
        stream = self._chat_impl(model=model, messages=messages, tools=tools)
        try:
            async for event in stream:
                if isinstance(event, ToolCallRequest):
                    calls.append(event)
                    continue
                if not event.text:
                    continue
                if first_token_ms is None:
                    first_token_ms = (self._clock() - started) * 1000.0
                parts.append(event.text)
                yield event
        except LLMError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc
        finally:
            await stream.aclose()
        yield Finished("".join(parts), tuple(calls), first_token_ms)

    def _wrap(self, exc: Exception) -> LLMError:
        """Unexpected failures: network-ish ones may pass, anything else is a bug or bad input."""
        retryable = isinstance(exc, TimeoutError | ConnectionError)
        return LLMError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=retryable)

    @abstractmethod
    def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        """Yield text deltas and completed tool calls; raise `LLMError` for known failures."""

    async def warm(self) -> None:  # noqa: B027 - optional hook, most engines need nothing
        """Load whatever the first call would otherwise wait for (models, downloads)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release connections, threads and models."""
