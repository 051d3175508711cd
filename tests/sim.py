"""A minimal simulated-carrier client for tests (the CLI has the full one)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ADMIN_KEY


@dataclass
class SimCall:
    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self.ws.recv())
            self.messages.append(message)
            if kind is None or message["type"] == kind:
                return message

    async def hangup(self) -> dict[str, Any]:
        await self.ws.send(json.dumps({"type": "hangup"}))
        return await self.next("ended")

    async def say(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "caller_text", "text": text}))


def start_message(to: str, from_: str = "+15555550100", key: str = ADMIN_KEY) -> str:
    return json.dumps(
        {"type": "start", "api_key": key, "to_number": to, "from_number": from_, "audio": False}
    )


async def open_call(ws_url: str, to: str, from_: str = "+15555550100", key: str = ADMIN_KEY):  # type: ignore[no-untyped-def]
    ws = await connect(ws_url)
    await ws.send(start_message(to, from_, key))
    return SimCall(ws)


async def refused_code(ws_url: str, to: str, key: str = ADMIN_KEY) -> int | None:
    async with connect(ws_url) as ws:
        await ws.send(start_message(to, key=key))
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        return ws.close_code


async def setup_and_hangup(
    ws_url: str, to: str, from_: str = "+15555550100"
) -> tuple[dict[str, Any], dict[str, Any]]:
    call = await open_call(ws_url, to, from_)
    try:
        setup = await call.next("setup")
        ended = (
            await call.hangup() if setup["config_source"] != "none" else await call.next("ended")
        )
        return setup, ended
    finally:
        await call.ws.close()
