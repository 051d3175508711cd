"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests of anything that talks to an LLM.

    with ScriptedLLMServer(default_text="Okay.") as llm:
        llm.reply_text("Hello there.").reply_tool_calls([("call_1", "lookup", {"id": 7})])
        ...  # point OpenAICompatibleLLM(llm.base_url, "key") at it
        assert llm.requests[1]["messages"][-1]["role"] == "tool"

Each request to `POST /v1/chat/completions` takes the next scripted reply (the default text
once the script runs out, so long conversations never hang); its JSON body is recorded in
`requests` and its headers in `headers`.
Streaming replies are SSE `data: {...}` chunks exactly as OpenAI sends them, ending with
`data: [DONE]`; tool calls arrive as fragments with the arguments split over several chunks.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port
from tests.servers import serve_in_thread

__all__ = ["ScriptedLLMServer", "split_words"]

ToolCallScript = tuple[str, str, dict[str, Any] | str]


def split_words(text: str) -> list[str]:
    """`"Hello there."` -> `["Hello", " there."]`: one chunk per word, as models stream."""
    return re.findall(r"\s*\S+(?:\s+$)?", text) or [text]


@dataclass(frozen=True)
class _Text:
    chunks: tuple[str, ...]
    delay: float
    chunk_delay: float


@dataclass(frozen=True)
class _ToolCalls:
    calls: tuple[tuple[str, str, str], ...]
    text: str | None
    delay: float


@dataclass(frozen=True)
class _Failure:
    status: int
    message: str


_Reply = _Text | _ToolCalls | _Failure


class ScriptedLLMServer:
    """Plays back a queue of scripted replies; records every request body it gets."""

    def __init__(self, default_text: str = "Okay.", *, argument_piece: int = 7) -> None:
        self.default_text = default_text
        self.argument_piece = argument_piece
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[_Reply] = deque()
        self._served = 0
        self._stack: ExitStack | None = None
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])]
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pending(self) -> int:
        """Scripted replies not yet played."""
        return len(self._script)

    # -- scripting -------------------------------------------------------------------------

    def reply_text(
        self,
        text: str,
        *,
        chunks: Sequence[str] | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
    ) -> Self:
        """Answer with text, streamed word by word (or in the given chunks) after `delay`."""
        parts = tuple(chunks) if chunks is not None else tuple(split_words(text))
        self._script.append(_Text(parts, delay, chunk_delay))
        return self

    def reply_tool_calls(
        self, calls: Sequence[ToolCallScript], *, text: str | None = None, delay: float = 0.0
    ) -> Self:
        """Answer with tool calls `(id, name, arguments)`; arguments as a dict or raw JSON."""
        encoded = tuple(
            (call_id, name, args if isinstance(args, str) else json.dumps(args))
            for call_id, name, args in calls
        )
        self._script.append(_ToolCalls(encoded, text, delay))
        return self

    def fail(self, status: int, message: str = "scripted failure") -> Self:
        """Answer with an OpenAI-style error body and this HTTP status."""
        self._script.append(_Failure(status, message))
        return self

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        stack = ExitStack()
        stack.enter_context(serve_in_thread(self.app, self.port))
        self._stack = stack
        return self

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    async def _completions(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self._script.popleft() if self._script else self._default()
        self._served += 1
        if isinstance(reply, _Failure):
            kind = "server_error" if reply.status >= 500 else "invalid_request_error"
            error = {"message": reply.message, "type": kind, "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=reply.status)
        model = str(body.get("model", "scripted"))
        completion_id = f"chatcmpl-scripted{self._served}"
        if body.get("stream"):
            events = self._stream(reply, completion_id, model)
            return StreamingResponse(events, media_type="text/event-stream")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return JSONResponse(self._whole(reply, completion_id, model))

    def _default(self) -> _Text:
        return _Text(tuple(split_words(self.default_text)), 0.0, 0.0)

    async def _stream(
        self, reply: _Text | _ToolCalls, completion_id: str, model: str
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return f"data: {json.dumps(payload)}\n\n"

        if reply.delay:
            await asyncio.sleep(reply.delay)
        if isinstance(reply, _Text):
            yield chunk({"role": "assistant", "content": ""})
            for part in reply.chunks:
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                yield chunk({"content": part})
            yield chunk({}, "stop")
        else:
            yield chunk({"role": "assistant", "content": None if reply.text is None else ""})
            for part in split_words(reply.text or ""):
                if part:
                    yield chunk({"content": part})
            for index, (call_id, name, arguments) in enumerate(reply.calls):
                head = {"id": call_id, "type": "function"}
                function = {"name": name, "arguments": ""}
                yield chunk({"tool_calls": [{"index": index, **head, "function": function}]})
                step = self.argument_piece
                for start in range(0, len(arguments), step):
                    piece = {"arguments": arguments[start : start + step]}
                    yield chunk({"tool_calls": [{"index": index, "function": piece}]})
            yield chunk({}, "tool_calls")
        yield "data: [DONE]\n\n"

    @staticmethod
    def _whole(reply: _Text | _ToolCalls, completion_id: str, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if isinstance(reply, _Text):
            message["content"] = "".join(reply.chunks)
            finish = "stop"
        else:
            message["content"] = reply.text
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in reply.calls
            ]
            finish = "tool_calls"
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
