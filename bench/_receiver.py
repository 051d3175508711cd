"""A receiver that answers every POST at once with a valid configuration (its own process)."""

from __future__ import annotations

import sys

import uvicorn

ANSWER = b'{"prompt":"You are a benchmark agent.","voice":"en_US-joe-medium","product":"spark"}'


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
