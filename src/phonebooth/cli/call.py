"""`phonebooth call`: place a call over the simulated carrier and script or type the caller.

Audio mode (`--audio`, `--record`, `--timeline`) lives in `call_audio`, imported only then so
the other commands never load numpy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from phonebooth.cli.client import CliError, resolve_api_key, resolve_server

if TYPE_CHECKING:
    from phonebooth.cli.call_audio import AudioLine, Clip

__all__ = ["call"]

EXIT_ENDED, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
_REFUSALS = {4404: "unknown number", 4503: "installation busy (concurrent-call limit)"}
_QUIET_HOLD_MS = 500  # after a turn ends, the agent's audio must be silent this long
_QUIET_MAX_S = 5.0  # ... but a line that never falls silent (a background track) goes on


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
        elif kind == "clear":
            self.close_agent_line()
            self.out("  [clear] the carrier flushed the agent's audio (barge-in)")
        elif kind == "error":
            self.close_agent_line()
            self.out(f"carrier error: {message.get('detail')}")


class _Session:
    def __init__(
        self, ws: ClientConnection, progress: _Progress, audio: AudioLine | None = None
    ) -> None:
        self.ws = ws
        self.progress = progress
        self.audio = audio
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
                if self.audio is not None:
                    self.audio.begin(self.ws.send)
                self.setup_seen.set()
            elif kind == "media" and self.audio is not None:
                self.audio.on_media(message.get("payload"))
            elif kind == "clear" and self.audio is not None:
                self.audio.on_clear()
            elif kind == "agent_turn_end":
                self.turn_ended.set()
            elif kind == "ended":
                return

    async def wait_turn(self, timeout: float) -> bool:
        """Wait for agent_turn_end; with audio, also let the agent's audio finish playing."""
        ended = True
        try:
            await asyncio.wait_for(self.turn_ended.wait(), timeout)
        except TimeoutError:
            self.progress.close_agent_line()
            self.progress.out(f"(no agent_turn_end within {timeout:g} s; going on)")
            ended = False
        self.turn_ended.clear()
        if self.audio is not None:
            await self.audio.wait_quiet(_QUIET_HOLD_MS, min(timeout, _QUIET_MAX_S))
        return ended

    async def say(self, text: str) -> None:
        self.progress.close_agent_line()
        self.progress.out(f"caller: {text}")
        self.turn_ended.clear()
        await self.ws.send(json.dumps({"type": "caller_text", "text": text}))

    async def speak(self, clip: Clip, barge_in: bool) -> None:
        """Send a recorded utterance; a barging caller ignores the interrupted turn's end."""
        assert self.audio is not None
        self.progress.close_agent_line()
        self.progress.out(f"caller: [{clip.name}, {clip.seconds:.2f} s of audio]")
        self.turn_ended.clear()
        await self.audio.speak(clip)
        if barge_in:
            self.turn_ended.clear()

    async def barge_in(self, after_ms: int, timeout: float) -> None:
        """Wait until the agent's audio has played `after_ms` (the caller then talks over it)."""
        assert self.audio is not None
        started = await self.audio.wait_agent_audio(timeout)
        if started is None:
            self.progress.out(f"(no agent audio within {timeout:g} s; speaking anyway)")
            return
        await asyncio.sleep(max(0.0, started + after_ms - self.audio.now_ms()) / 1000)

    async def hangup(self) -> None:
        if self.audio is not None:
            await self.audio.close()
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps({"type": "hangup"}))


@dataclass(frozen=True)
class _Script:
    """What the caller does: text lines or recorded utterances, each answered by a turn."""

    items: list[str | Clip]
    turn_timeout: float
    barge_in_ms: int | None = None


async def _scripted(session: _Session, script: _Script) -> None:
    await session.setup_seen.wait()
    setup = session.setup or {}
    if setup.get("config_source") == "none":
        return  # the server ends such a call at once
    timeout, barge_in_ms = script.turn_timeout, script.barge_in_ms
    agent_first = setup.get("speak_order", "agent_first") == "agent_first"
    for index, item in enumerate(script.items):
        if barge_in_ms is not None and (index > 0 or agent_first):
            await session.barge_in(barge_in_ms, timeout)
        elif index == 0 and agent_first:
            await session.wait_turn(timeout)
        if isinstance(item, str):
            await session.say(item)
        else:
            await session.speak(item, barge_in_ms is not None)
        if barge_in_ms is None or index == len(script.items) - 1:
            await session.wait_turn(timeout)
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
    url: str,
    start: dict[str, Any],
    script: _Script,
    progress: _Progress,
    audio: AudioLine | None = None,
) -> int:
    try:
        async with connect(url, open_timeout=15, max_size=2**24) as ws:
            await ws.send(json.dumps(start))
            session = _Session(ws, progress, audio)
            pump = asyncio.create_task(session.pump())
            driver = asyncio.create_task(
                _scripted(session, script) if script.items else _interactive(session)
            )
            try:
                await pump
            except ConnectionClosed:
                pass
            finally:
                driver.cancel()
                if audio is not None:
                    await audio.close()
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
    audio: Annotated[
        list[Path] | None,
        typer.Option("--audio", help="A WAV of a caller utterance; repeat for a script"),
    ] = None,
    record: Annotated[
        Path | None, typer.Option("--record", help="Write what the caller heard (8 kHz WAV)")
    ] = None,
    timeline: Annotated[
        Path | None,
        typer.Option("--timeline", help="Write the playout and caller events (JSON)"),
    ] = None,
    barge_in_ms: Annotated[
        int | None,
        typer.Option(
            "--barge-in-ms",
            help="Start each --audio this many ms into the agent's audio instead of after it",
        ),
    ] = None,
) -> None:
    """Place a call through the simulated carrier (exit 0 ended, 2 refused, 1 error)."""
    progress = _Progress(as_json)
    audio_mode = bool(audio) or record is not None or timeline is not None
    try:
        key = resolve_api_key(api_key)
        clips, line = _audio_setup(say, audio, barge_in_ms, audio_mode)
    except CliError as error:
        progress.out(error.message)
        raise typer.Exit(EXIT_ERROR) from None
    base = resolve_server(server)
    url = "ws" + base.removeprefix("http") + "/v1/sim/call"
    start = {
        "type": "start",
        "api_key": key,
        "to_number": to,
        "from_number": from_,
        "audio": audio_mode,
    }
    script = _Script([*(say or []), *clips], turn_timeout, barge_in_ms)
    try:
        code = asyncio.run(_place(url, start, script, progress, line))
    except KeyboardInterrupt:
        code = EXIT_ERROR
    if line is not None:
        try:
            line.save(record, timeline)
        except OSError as error:
            progress.out(f"Cannot write the call's audio output: {error}")
            code = max(code, EXIT_ERROR)
    if as_json and progress.ended is not None:
        ended = {k: v for k, v in progress.ended.items() if k != "type"}
        sys.stdout.write(json.dumps(ended, ensure_ascii=False) + "\n")
    raise typer.Exit(code)


def _audio_setup(
    say: list[str] | None, audio: list[Path] | None, barge_in_ms: int | None, audio_mode: bool
) -> tuple[list[Clip], AudioLine | None]:
    """Check the audio flags and read the --audio files before dialling: a bad one costs no call."""
    if barge_in_ms is not None and not audio:
        raise CliError("--barge-in-ms needs --audio")
    if not audio_mode:
        return [], None
    from phonebooth.cli.call_audio import AudioFileError, AudioLine, load_clip

    if say and audio:
        raise CliError("--say and --audio cannot be combined: script the caller with one or other")
    if barge_in_ms is not None and barge_in_ms < 0:
        raise CliError("--barge-in-ms must be 0 or more")
    try:
        clips = [load_clip(path) for path in audio or []]
    except AudioFileError as error:
        raise CliError(str(error)) from None
    return clips, AudioLine()
