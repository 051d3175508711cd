"""`phonebooth call`: place a call over the simulated carrier and script or type the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from phonebooth.cli.client import CliError, resolve_api_key, resolve_server

__all__ = ["call"]

EXIT_ENDED, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
_REFUSALS = {4404: "unknown number", 4503: "installation busy (concurrent-call limit)"}


@dataclass
class _Progress:
    """Prints what happens: to stdout for people, to stderr when stdout is kept for JSON."""

    as_json: bool
    agent_line_open: bool = False
    ended: dict[str, Any] | None = None
    turn_ends: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def out(self, text: str = "", *, end: str = "\n") -> None:
        stream = sys.stderr if self.as_json else sys.stdout
        stream.write(text + end)
        stream.flush()

    def close_agent_line(self) -> None:
        if self.agent_line_open:
            self.out()
            self.agent_line_open = False

    def show(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "setup":
            error = message.get("config_error")
            why = f" ({error['reason']})" if error else ""
            self.out(
                f"Connected: call {message['call_id']}, config from {message['config_source']}{why}"
            )
        elif kind == "agent_text":
            if not self.agent_line_open:
                self.out("agent: ", end="")
                self.agent_line_open = True
            self.out(str(message.get("delta", "")), end="")
        elif kind == "agent_turn_end":
            self.close_agent_line()
            self.turn_ends += 1
        elif kind == "tool_call":
            self.close_agent_line()
            arguments = json.dumps(message.get("arguments"), ensure_ascii=False)
            self.out(f"  [tool] {message.get('name')}({arguments})")
        elif kind == "tool_result":
            self.close_agent_line()
            self.out(
                f"  [tool] {message.get('name')} -> "
                f"{json.dumps(message.get('result'), ensure_ascii=False)}"
            )
        elif kind == "ended":
            self.close_agent_line()
            self.ended = message
            self.out(
                f"Call ended: {message.get('end_reason')} "
                f"({message.get('duration_seconds')} s, status {message.get('status')})"
            )
        elif kind == "error":
            self.close_agent_line()
            self.out(f"carrier error: {message.get('detail')}")


class _Session:
    def __init__(self, ws: ClientConnection, progress: _Progress) -> None:
        self.ws = ws
        self.progress = progress
        self.turn_ended = asyncio.Event()
        self.setup: dict[str, Any] | None = None
        self.setup_seen = asyncio.Event()

    async def pump(self) -> None:
        """Read server messages until the call ends or the socket closes."""
        async for raw in self.ws:
            message = json.loads(raw)
            self.progress.show(message)
            kind = message.get("type")
            if kind == "setup":
                self.setup = message
                self.setup_seen.set()
            elif kind == "agent_turn_end":
                self.turn_ended.set()
            elif kind == "ended":
                return

    async def wait_turn(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.turn_ended.wait(), timeout)
        except TimeoutError:
            self.progress.close_agent_line()
            self.progress.out(f"(no agent_turn_end within {timeout:g} s; going on)")
            return False
        finally:
            self.turn_ended.clear()
        return True

    async def say(self, text: str) -> None:
        self.progress.close_agent_line()
        self.progress.out(f"caller: {text}")
        self.turn_ended.clear()
        await self.ws.send(json.dumps({"type": "caller_text", "text": text}))

    async def hangup(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps({"type": "hangup"}))


async def _scripted(session: _Session, lines: list[str], turn_timeout: float) -> None:
    await session.setup_seen.wait()
    setup = session.setup or {}
    if setup.get("config_source") == "none":
        return  # the server ends such a call at once
    if setup.get("speak_order", "agent_first") == "agent_first":
        await session.wait_turn(turn_timeout)
    for line in lines:
        await session.say(line)
        await session.wait_turn(turn_timeout)
    await session.hangup()


async def _interactive(session: _Session) -> None:
    await session.setup_seen.wait()
    loop = asyncio.get_running_loop()
    session.progress.out("Type what the caller says; /hangup or Ctrl-D ends the call.")
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "/hangup":
            await session.hangup()
            return
        if line.strip():
            await session.say(line.strip())


async def _place(
    url: str, start: dict[str, Any], lines: list[str], turn_timeout: float, progress: _Progress
) -> int:
    try:
        async with connect(url, open_timeout=15, max_size=2**24) as ws:
            await ws.send(json.dumps(start))
            session = _Session(ws, progress)
            pump = asyncio.create_task(session.pump())
            driver = asyncio.create_task(
                _scripted(session, lines, turn_timeout) if lines else _interactive(session)
            )
            try:
                await pump
            except ConnectionClosed:
                pass
            finally:
                driver.cancel()
            if progress.ended is not None:
                return EXIT_ENDED
            code = ws.close_code
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        progress.out(f"Cannot reach the simulated carrier at {url}: {exc}")
        return EXIT_ERROR
    if code in _REFUSALS:
        progress.out(f"Call refused: {_REFUSALS[code]} (close code {code}).")
        return EXIT_REFUSED
    if code == 4401:
        progress.out("Call refused: invalid or revoked API key (close code 4401).")
        return EXIT_ERROR
    progress.out(f"The carrier closed the connection (code {code}) before the call ended.")
    return EXIT_ERROR


def call(
    to: Annotated[str, typer.Option("--to", help="The number to call (E.164)")],
    from_: Annotated[str, typer.Option("--from", help="Caller number")] = "+15555550100",
    say: Annotated[
        list[str] | None, typer.Option("--say", help="A caller line; repeat for a script")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the ended call object on stdout")
    ] = False,
    server: Annotated[str | None, typer.Option("--server", help="phonebooth URL")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="API key")] = None,
    turn_timeout: Annotated[
        float, typer.Option("--turn-timeout", help="Seconds to wait for each agent turn")
    ] = 60.0,
) -> None:
    """Place a call through the simulated carrier (exit 0 ended, 2 refused, 1 error)."""
    progress = _Progress(as_json)
    try:
        key = resolve_api_key(api_key)
    except CliError as error:
        progress.out(error.message)
        raise typer.Exit(EXIT_ERROR) from None
    base = resolve_server(server)
    url = "ws" + base.removeprefix("http") + "/v1/sim/call"
    start = {"type": "start", "api_key": key, "to_number": to, "from_number": from_, "audio": False}
    try:
        code = asyncio.run(_place(url, start, list(say or []), turn_timeout, progress))
    except KeyboardInterrupt:
        code = EXIT_ERROR
    if as_json and progress.ended is not None:
        ended = {k: v for k, v in progress.ended.items() if k != "type"}
        sys.stdout.write(json.dumps(ended, ensure_ascii=False) + "\n")
    raise typer.Exit(code)
