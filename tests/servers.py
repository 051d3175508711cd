"""Real HTTP servers on 127.0.0.1 for tests: a scripted receiver and phonebooth itself."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port

Behaviour = Callable[[Request], Awaitable[Response]]


@dataclass
class Received:
    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


def json_answer(payload: Any, status: int = 200) -> Behaviour:
    async def answer(_request: Request) -> Response:
        return Response(json.dumps(payload), status_code=status, media_type="application/json")

    return answer


def raw_answer(
    body: bytes | str, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0
) -> Behaviour:
    async def answer(_request: Request) -> Response:
        if delay:
            await asyncio.sleep(delay)
        return Response(body, status_code=status, headers=headers)

    return answer


class ScriptedReceiver:
    """Answers each path with the behaviour set for it; records every request it gets."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Received] = []
        self.port = free_port()
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                )
            ]
        )

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, behaviour: Behaviour) -> str:
        self.behaviours[path] = behaviour
        return self.url(path)

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        raw_path = request.scope["raw_path"].decode()
        query = request.scope.get("query_string", b"").decode()
        self.requests.append(
            Received(
                request.method,
                request.url.path,
                raw_path + (f"?{query}" if query else ""),
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )
        behaviour = self.behaviours.get(request.url.path)
        if behaviour is None:
            return Response("no behaviour for this path", status_code=404)
        return await behaviour(request)


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[None]:
    """Run an ASGI app under uvicorn on 127.0.0.1:port in a thread of its own."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
