"""An audio caller for tests: paced 8 kHz mu-law frames out, agent frames in with timestamps."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.resample import resample
from tests.conftest import ADMIN_KEY

DATA = Path(__file__).parent / "data"
FRAME = 160  # 20 ms at 8 kHz
SILENT = bytes(FRAME * 2)


def load_frames(name: str) -> list[bytes]:
    """A WAV fixture as 8 kHz 16-bit frames of 20 ms."""
    with wave.open(str(DATA / name)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    pcm = resample(samples, rate, 8000).tobytes()
    pcm += bytes(-len(pcm) % (FRAME * 2))
    return [pcm[i : i + FRAME * 2] for i in range(0, len(pcm), FRAME * 2)]


def level(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


@dataclass
class AudioCaller:
    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    heard: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, pcm16)
    cleared_at: list[float] = field(default_factory=list)
    outgoing: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    sent_at: list[tuple[float, bytes]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "media":
                pcm = ulaw_decode(base64.b64decode(message["payload"])).tobytes()
                self.heard.append((time.monotonic(), pcm))
                continue
            if message["type"] == "clear":
                self.cleared_at.append(time.monotonic())
            self.messages.append(message)
            if message["type"] == "ended":
                self.ended.set()
                return

    async def send_paced(self) -> None:
        """One frame every 20 ms: queued speech, else silence (the line stays open)."""
        start = time.monotonic()
        tick = 0
        while not self.ended.is_set():
            frame = self.outgoing.get_nowait() if not self.outgoing.empty() else SILENT
            self.sent_at.append((time.monotonic(), frame))
            payload = base64.b64encode(ulaw_encode(frame)).decode()
            try:
                await self.ws.send(json.dumps({"type": "media", "payload": payload}))
            except Exception:
                return
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))

    def speak(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.outgoing.put_nowait(frame)

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.messages if m["type"] == kind]
            if len(matching) >= count:
                return matching[count - 1]
            assert time.monotonic() < deadline, f"no {kind} #{count}: {self.messages[-5:]}"
            await asyncio.sleep(0.02)

    async def wait_audible(self, after: int = 0, timeout: float = 30) -> None:
        """Until a frame of the agent's voice arrives (after frame number `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(level(pcm) >= 1000 for _, pcm in self.heard[after:]):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the agent never spoke")

    async def wait_quiet(self, quiet_s: float = 0.6, timeout: float = 30) -> None:
        """Until the agent's audio has been silent (or background only) for `quiet_s`."""
        deadline = time.monotonic() + timeout
        frames = round(quiet_s / 0.02)
        while time.monotonic() < deadline:
            recent = self.heard[-frames:]
            if len(recent) == frames and all(level(pcm) < 1000 for _, pcm in recent):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the agent never went quiet")

    async def hangup(self) -> dict[str, Any]:
        await self.ws.send(json.dumps({"type": "hangup"}))
        await asyncio.wait_for(self.ended.wait(), 30)
        return next(m for m in self.messages if m["type"] == "ended")


@asynccontextmanager
async def audio_call(ws_url: str, to: str) -> AsyncIterator[AudioCaller]:
    """A connected audio caller (media flowing once the call is set up), closed afterwards."""
    caller, tasks = await start_audio_call(ws_url, to)
    try:
        yield caller
    finally:
        for task in tasks:
            task.cancel()
        await caller.ws.close()


async def start_audio_call(ws_url: str, to: str) -> tuple[AudioCaller, list[asyncio.Task[None]]]:
    ws = await connect(ws_url, max_size=2**24)
    await ws.send(
        json.dumps(
            {
                "type": "start",
                "api_key": ADMIN_KEY,
                "to_number": to,
                "from_number": "+15555550100",
                "audio": True,
            }
        )
    )
    caller = AudioCaller(ws)
    receiving = asyncio.create_task(caller.receive())
    await caller.wait_for("setup", timeout=60)  # a carrier's media starts once the call is up
    return caller, [receiving, asyncio.create_task(caller.send_paced())]
