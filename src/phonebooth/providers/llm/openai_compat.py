"""Any OpenAI-compatible chat endpoint (OpenAI, Groq, vLLM, Ollama, llama.cpp server).

The `openai` SDK is imported when a provider is built, not when phonebooth is, so the package
imports without it. Retries are off in the SDK: its backoff would add seconds of dead air to a
phone call, and whether to try again (or fall back) is the caller's decision.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phonebooth.providers.llm.base import (
    LLM,
    ImplEvent,
    LLMCapabilities,
    LLMError,
    LLMUnavailable,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    status_is_retryable,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import (
        ChatCompletionChunk,
        ChatCompletionMessageParam,
        ChatCompletionToolParam,
    )

__all__ = ["OPENAI_DEFAULT_BASE_URL", "OpenAICompatibleLLM", "to_openai_messages"]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Servers that need no key (Ollama, vLLM) still need a non-empty value; without it the SDK
# would read OPENAI_API_KEY and send that secret to whatever base URL is configured.
_NO_KEY = "not-needed"


def to_openai_messages(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """Provider-neutral messages in the chat-completions shape, tool calls included."""
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content or ""})
        elif message.role == "user":
            out.append({"role": "user", "content": message.content or ""})
        elif message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content or "",
                }
            )
        elif message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments_json},
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": "assistant", "content": message.content or ""})
    return out


def _to_openai_tools(tools: Sequence[ToolSpec]) -> list[ChatCompletionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


@dataclass
class _PartialCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class _ToolCallAssembler:
    """Joins streamed tool-call fragments by index into complete calls.

    Names and ids are taken once (some servers repeat them in every fragment); a new id at an
    index already in use starts a new call (some servers number every call 0).
    """

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._by_index: dict[int, _PartialCall] = {}

    def add(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
        partial = self._by_index.get(index)
        if partial is None or (call_id and partial.id and call_id != partial.id):
            partial = _PartialCall()
            self._by_index[index] = partial
            self._calls.append(partial)
        if call_id and not partial.id:
            partial.id = call_id
        if name and not partial.name:
            partial.name = name
        if arguments:
            partial.arguments.append(arguments)

    def complete(self) -> list[ToolCallRequest]:
        return [
            ToolCallRequest(
                id=partial.id or f"call_{uuid.uuid4().hex[:24]}",
                name=partial.name or "",
                arguments_json="".join(partial.arguments) or "{}",
            )
            for partial in self._calls
        ]


class OpenAICompatibleLLM(LLM):
    """Streams chat completions with tool calls from one OpenAI-compatible base URL."""

    name = "openai"
    capabilities = LLMCapabilities(streaming=True, tool_calls=True)

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float = 30,
        max_retries: int = 0,
    ) -> None:
        super().__init__()
        try:
            import openai
        except ImportError as exc:
            raise LLMUnavailable(
                "the openai provider needs the openai SDK: pip install openai"
            ) from exc
        self.base_url = base_url or OPENAI_DEFAULT_BASE_URL
        self._client: AsyncOpenAI = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or _NO_KEY,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        import openai

        assembler = _ToolCallAssembler()
        try:
            if tools:
                stream = await self._client.chat.completions.create(
                    model=model,
                    messages=to_openai_messages(messages),
                    tools=_to_openai_tools(tools),
                    stream=True,
                )
            else:
                stream = await self._client.chat.completions.create(
                    model=model, messages=to_openai_messages(messages), stream=True
                )
            try:
                async for chunk in stream:
                    for event in _chunk_text(chunk, assembler):
                        yield event
            finally:
                await stream.close()
        except openai.APIStatusError as exc:
            raise LLMError(
                f"{self.name} at {self.base_url}: HTTP {exc.status_code}: {_error_message(exc)}",
                retryable=status_is_retryable(exc.status_code),
                status_code=exc.status_code,
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(
                f"{self.name} at {self.base_url}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=False) from exc
        for call in assembler.complete():
            yield call

    async def aclose(self) -> None:
        await self._client.close()


def _chunk_text(chunk: ChatCompletionChunk, assembler: _ToolCallAssembler) -> list[TextDelta]:
    """The chunk's text; its tool-call fragments go to the assembler."""
    out: list[TextDelta] = []
    for choice in chunk.choices[:1]:
        delta = choice.delta
        if delta.content:
            out.append(TextDelta(delta.content))
        for fragment in delta.tool_calls or ():
            function = fragment.function
            assembler.add(
                fragment.index,
                fragment.id,
                function.name if function else None,
                function.arguments if function else None,
            )
    return out


def _error_message(exc: Any) -> str:
    """The server's own `error.message` when it sent one, else the SDK's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(getattr(exc, "message", exc))
