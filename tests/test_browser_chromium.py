"""The browser phone in real headless Chromium, with a WAV file as the microphone.

Chromium plays the caller fixture through its fake capture device; the page turns it into
8 kHz mu-law frames in an AudioWorklet and calls a number whose webhook answers with the
contract's `search_appointments` tool. Whisper must hear the caller, the tool must be called,
and Whisper must hear the agent's answer in the audio the page received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phonebooth.voice.g711 import ulaw_decode
from tests.conftest import ADMIN_KEY, LiveServer, skip_or_fail
from tests.helpers import SEARCH_TOOL
from tests.llm_server import ScriptedLLMServer
from tests.servers import ScriptedReceiver, json_answer
from tests.test_voice_call import SPOKEN, word_error_rate
from tests.voice_client import DATA, start_audio_call

CHROMIUM = "/usr/bin/chromium"
NUMBER = "+15555550200"
AGENT_TEXT = "Yes, we have an opening tomorrow morning. Shall I book it for you?"
# /work/.library/env/machines/python.md: what this machine's closed network needs.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

pytestmark = pytest.mark.slow


def caller_wav(directory: Path) -> Path:
    """The caller fixture with two seconds of silence before and after, 16-bit mono.

    Played once (`%noloop` on the flag): the leading silence lets the call connect before
    the caller speaks, the trailing silence lets the server's endpointing close the turn.
    """
    with wave.open(str(DATA / "caller_book_appointment.wav")) as source:
        rate = source.getframerate()
        assert source.getnchannels() == 1 and source.getsampwidth() == 2
        speech = source.readframes(source.getnframes())
    path = directory / "caller.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(4 * rate) + speech + bytes(4 * rate))
    return path


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh headless Chromium (its own profile) whose microphone plays the caller WAV."""
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("the playwright pip package is missing (pip install -e '.[dev]')")
        raise
    wav = caller_wav(tmp_path)
    profile = tmp_path / "chromium-profile"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}%noloop"],
        )
        try:
            yield context
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


async def configure(live: LiveServer, receiver: ScriptedReceiver, llm: ScriptedLLMServer) -> None:
    """A number whose `web.incoming` endpoint answers with the search tool; a scripted model."""
    search = {**SEARCH_TOOL, "endpoint": {**SEARCH_TOOL["endpoint"]}}
    search["endpoint"]["url"] = receiver.on("/search", json_answer({"slots": ["9:00", "11:30"]}))
    config = {
        "prompt": "You are a friendly receptionist for a dental clinic.",
        "voice": "en-US-Standard-Journey-D",
        "product": "bolt",
        "tools": [search],
    }
    incoming = receiver.on("/incoming", json_answer(config))
    body = {"label": "web", "url": incoming, "events": ["web.incoming"]}
    await live.json("POST", "/v1/developer/webhook-endpoints", body, 201)
    agent = await live.add_agent(inbound_speak_order="caller_first")
    await live.add_number(NUMBER, agent["id"])
    llm.reply_tool_calls([("call_1", "search_appointments", {"date": "tomorrow"})])
    llm.reply_text(AGENT_TEXT)


async def warm_engines(live: LiveServer) -> None:
    """One short audio call over the simulated carrier loads whisper and piper, so the page's
    call does not wait seconds for models while the fake microphone is already playing."""
    caller, tasks = await start_audio_call(live.ws_url, NUMBER)
    try:
        await caller.wait_for("setup", timeout=120)
        await caller.hangup()
    finally:
        for task in tasks:
            task.cancel()
        await caller.ws.close()


async def wait_js(page: Any, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression until it is true. `page.evaluate` runs outside the page's
    policy; Playwright's `wait_for_function` evaluates strings inside it, which the page's
    CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            state = await page.evaluate("[window.phonebooth.state, window.phonebooth.error]")
            raise AssertionError(f"timed out waiting for {expression} (page: {state})")
        await asyncio.sleep(0.1)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


async def received_pcm(page: Any) -> np.ndarray:
    encoded = await page.evaluate("window.phonebooth.receivedPcmBase64()")
    return np.frombuffer(base64.b64decode(encoded), dtype="<i2")


async def wait_for_agent_audio(page: Any, timeout: float = 60) -> None:
    """Until the agent has spoken and then been quiet for a second."""
    deadline = time.monotonic() + timeout
    heard = False
    while time.monotonic() < deadline:
        pcm = await received_pcm(page)
        frames = pcm[: pcm.size - pcm.size % 160].reshape(-1, 160)
        levels = [rms(frame) for frame in frames]
        heard = heard or any(level > 1000 for level in levels)
        if heard and len(levels) >= 50 and max(levels[-50:]) < 1000:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the agent's audio never finished (heard any: {heard})")


@dataclass
class Watch:
    """Everything the page asked for and complained about, seen from outside the page."""

    urls: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.on("response", self._response)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)

    async def _response(self, response: Any) -> None:
        if response.url.endswith("/v1/web-sessions") and response.ok:
            self.tokens.append((await response.json())["token"])

    def _console(self, message: Any) -> None:
        if message.type == "error":  # CSP violations land here too
            self.problems.append(f"{message.text} {message.location}")


async def place_call(page: Any, base: str) -> None:
    """What a person does: open the page, type the key, load the numbers, pick one, call."""
    await page.goto(f"{base}/phone")
    await page.fill("#api-key", ADMIN_KEY)
    await page.click("#load-numbers")
    await wait_js(
        page, f"[...document.querySelectorAll('#number option')].some(o => o.value === '{NUMBER}')"
    )
    await page.select_option("#number", NUMBER)
    await page.click("#call")
    await wait_js(page, "window.phonebooth.state === 'in_call'", 30)


async def test_browser_call_with_a_tool(
    live: LiveServer,
    llm: ScriptedLLMServer,
    receiver: ScriptedReceiver,
    browser: Any,
) -> None:
    await configure(live, receiver, llm)
    await warm_engines(live)
    page = await browser.new_page()
    watch = Watch()
    watch.attach(page)
    await place_call(page, live.base)
    assert await page.input_value("#api-key") == "", "the key must be gone once traded"
    await wait_js(page, "window.phonebooth.transcript.some(l => l.role === 'tool_response')", 90)
    await wait_js(
        page,
        "window.phonebooth.transcript.some(l => l.role === 'assistant' && l.text.endsWith('?'))",
        60,
    )
    live_lines = await page.evaluate("window.phonebooth.transcript.map(l => [l.role, l.text])")
    await wait_for_agent_audio(page)
    await page.click("#hangup")
    await wait_js(page, "window.phonebooth.state === 'ended'", 30)
    state = await page.evaluate(
        "({transcript: window.phonebooth.transcript.map(l => ({role: l.role, text: l.text})),"
        " ended: window.phonebooth.ended, played: window.phonebooth.played,"
        " sent: window.phonebooth.sentFrames, socketUrl: window.phonebooth.socketUrl,"
        " decoded: Array.from(window.phonebooth.ulawDecode(Uint8Array.from("
        "{length: 256}, (_, i) => i)))})"
    )
    pcm = await received_pcm(page)

    # the caller was heard, the tool was called, the agent answered
    lines = state["transcript"]
    user = [line["text"] for line in lines if line["role"] == "user"]
    assert user and word_error_rate(SPOKEN, user[0]) < 0.2, lines
    assert [line["role"] for line in lines] == ["user", "tool_call", "tool_response", "assistant"]
    assert lines[1]["text"] == 'search_appointments {"date":"tomorrow"}'
    assert json.loads(lines[2]["text"]) == {"slots": ["9:00", "11:30"]}
    assert lines[-1]["text"] == AGENT_TEXT
    assert ["tool_call", 'search_appointments {"date":"tomorrow"}'] in live_lines
    assert ["assistant", AGENT_TEXT] in live_lines
    searches = receiver.requests_to("/search")
    assert len(searches) == 1 and searches[0].json() == {"date": "tomorrow"}
    incoming = [r.json() for r in receiver.requests_to("/incoming")]
    assert [(b["type"], b["data"]["from_number"]) for b in incoming] == [("web.incoming", "web")]
    ended = state["ended"]
    assert ended["direction"] == "web" and ended["from_number"] == "web"
    assert ended["end_reason"] == "caller_hangup"
    assert state["sent"] > 100  # more than two seconds of microphone frames went out

    # what the browser received is the agent's answer, and it went through the playback worklet
    from phonebooth.providers.stt.faster_whisper import FasterWhisperSTT

    stt = FasterWhisperSTT()
    try:
        heard = await stt.recognize(pcm.tobytes(), 8000)
    finally:
        await stt.aclose()
    assert word_error_rate(AGENT_TEXT, heard.text) < 0.2, heard.text
    assert state["played"]["audible"] > 8000, state["played"]  # about a second, at any rate
    assert state["decoded"] == ulaw_decode(bytes(range(256))).tolist()

    # the key and the token never went into a URL; the policy let everything run
    socket_url = live.base.replace("http://", "ws://") + "/v1/web/call"
    assert watch.sockets == [socket_url] and state["socketUrl"] == socket_url
    assert len(watch.tokens) == 1
    for url in [*watch.urls, *watch.sockets]:
        assert ADMIN_KEY not in url and watch.tokens[0] not in url, url
    assert not watch.problems, watch.problems
