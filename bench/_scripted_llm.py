"""A minimal OpenAI-compatible chat server for benchmarks: every request gets the same reply.

    python bench/_scripted_llm.py PORT "One sentence the agent says."

`POST /v1/chat/completions` answers at once. Streaming requests get SSE chunks, one per word,
as a real model streams them (a role chunk, the words, a finish chunk, `data: [DONE]`); other
requests get the whole completion. It runs in its own process so its work never shares a
core's interpreter lock with the server or the load generator it is measured with.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build(reply: str) -> Starlette:
    words = re.findall(r"\s*\S+", reply) or [reply]
    served = 0

    def chunk(completion: str, model: str, delta: dict[str, object], finish: str | None) -> str:
        payload = {
            "id": completion,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload)}\n\n"

    async def stream(completion: str, model: str) -> AsyncIterator[str]:
        yield chunk(completion, model, {"role": "assistant", "content": ""}, None)
        for word in words:
            yield chunk(completion, model, {"content": word}, None)
        yield chunk(completion, model, {}, "stop")
        yield "data: [DONE]\n\n"

    async def completions(request: Request) -> Response:
        nonlocal served
        served += 1
        body = json.loads(await request.body())
        model = str(body.get("model", "scripted"))
        completion = f"chatcmpl-bench{served}"
        if body.get("stream"):
            return StreamingResponse(stream(completion, model), media_type="text/event-stream")
        message = {"role": "assistant", "content": reply}
        return JSONResponse(
            {
                "id": completion,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    async def health(_request: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/health", health),
        ]
    )


def main() -> None:
    port = int(sys.argv[1])
    reply = sys.argv[2] if len(sys.argv) > 2 else "Okay."
    uvicorn.run(build(reply), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
