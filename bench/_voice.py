"""Shared parts of the voice benchmarks: processes to start, caller audio, an audio caller.

Everything runs on 127.0.0.1. Audio on the wire is the simulated carrier's: JSON `media`
messages with base64 8 kHz mu-law frames of 20 ms, paced in real time by each side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).parent))
from _server import BENCH_KEY, _free_port

from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.resample import resample

__all__ = [
    "BENCH_KEY",
    "FRAME_BYTES",
    "AudioCaller",
    "Utterance",
    "load_wav",
    "pct",
    "piper_utterances",
    "scripted_llm",
    "voice_server",
]

BENCH = Path(__file__).parent
REPO = BENCH.parent
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
SILENT = bytes(FRAME_BYTES)
SPEECH_LEVEL = 200.0  # frame RMS (int16) above which a caller frame counts as speech


def pct(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def level(frame: bytes | np.ndarray) -> float:
    samples = np.frombuffer(frame, dtype=np.int16) if isinstance(frame, bytes) else frame
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


# -- processes ------------------------------------------------------------------------------


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def scripted_llm(reply: str) -> Iterator[str]:
    """An OpenAI-compatible model in its own process that says `reply` at once; its base URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(BENCH / "_scripted_llm.py"), str(port), reply])
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", process, "the scripted model")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(process)


@contextmanager
def voice_server(
    env: dict[str, str],
    argv: Sequence[str] | None = None,
    cpu: set[int] | None = None,
    nice: int = 0,
) -> Iterator[str]:
    """A fresh server (`phonebooth serve` unless `argv` says otherwise) in a temporary data
    dir with the bench admin key and `env` on top; yields its base URL. `cpu` pins it to
    those cores; `nice` (negative needs root) changes its scheduling priority."""

    def prepare() -> None:
        if cpu:
            os.sched_setaffinity(0, cpu)
        if nice:
            os.nice(nice)

    with tempfile.TemporaryDirectory() as data_dir:
        port = _free_port()
        full_env = {
            **os.environ,
            "PHONEBOOTH_DATA_DIR": data_dir,
            "PHONEBOOTH_PORT": str(port),
            "PHONEBOOTH_API_KEY": BENCH_KEY,
            "PHONEBOOTH_LOG_LEVEL": "warning",
            **env,
        }
        command = list(argv) if argv else [sys.executable, "-m", "phonebooth", "serve"]
        process = subprocess.Popen(
            command,
            env=full_env,
            stdout=subprocess.DEVNULL,
            preexec_fn=prepare if cpu or nice else None,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_http(base + "/v1/healthz", process, "the server")
            yield base
        finally:
            _stop(process)


async def add_line(base: str, number: str, **agent: Any) -> None:
    """An agent (with `agent` fields) as the default agent of `number`."""
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
        body = {"name": "bench", "prompt": "You are a receptionist.", "voice": "v", **agent}
        created = await api.post("/v1/agents", json=body)
        created.raise_for_status()
        response = await api.post(
            "/v1/phone-numbers", json={"number": number, "inbound_agent_id": created.json()["id"]}
        )
        response.raise_for_status()


# -- caller audio ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """What a caller says: 8 kHz 16-bit frames, trimmed so the last frame is the last speech."""

    name: str
    frames: tuple[bytes, ...]

    @property
    def seconds(self) -> float:
        return len(self.frames) * 0.02


def _trimmed(name: str, samples: np.ndarray, rate: int) -> Utterance:
    pcm = resample(samples.astype(np.int16), rate, 8000)
    pcm = np.concatenate((pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, dtype=np.int16)))
    frames = [pcm[i : i + FRAME_SAMPLES] for i in range(0, len(pcm), FRAME_SAMPLES)]
    loud = [i for i, frame in enumerate(frames) if level(frame) >= SPEECH_LEVEL]
    if not loud:
        raise ValueError(f"{name} has no speech")
    kept = frames[max(0, loud[0] - 2) : loud[-1] + 1]  # two quiet frames of onset, no tail
    return Utterance(name, tuple(frame.astype("<i2").tobytes() for frame in kept))


def load_wav(path: Path) -> Utterance:
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return _trimmed(path.stem, samples, rate)


async def piper_utterances(texts: Sequence[str]) -> list[Utterance]:
    """Caller lines spoken by the installed piper voice (made once, at the bench's start)."""
    from phonebooth.providers.tts.piper import PiperTTS

    tts = PiperTTS(max_workers=1)
    voice = tts.default_voice
    assert voice is not None
    out = []
    try:
        for text in texts:
            pieces = [chunk async for chunk in tts.synthesize(text, voice)]
            pcm = np.frombuffer(b"".join(p.pcm16 for p in pieces), dtype=np.int16)
            out.append(_trimmed(text, pcm, pieces[0].sample_rate))
    finally:
        await tts.aclose()
    return out


def media_message(frame: bytes) -> str:
    return json.dumps({"type": "media", "payload": base64.b64encode(ulaw_encode(frame)).decode()})


# -- an audio caller ------------------------------------------------------------------------


@dataclass
class AudioCaller:
    """One call over the simulated carrier: paced frames out, agent frames in, timestamped.

    `heard` holds (arrival, peak |sample|) per agent frame: with no background track the
    agent's side is digital silence between utterances, so peak 0 means nothing was played.
    """

    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    heard: list[tuple[float, int]] = field(default_factory=list)
    texts: list[float] = field(default_factory=list)  # arrival of each agent_text
    outgoing: deque[tuple[str, bool]] = field(default_factory=deque)
    last_speech_sent: float | None = None
    pacing_late: list[float] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _silent: str = field(default_factory=lambda: media_message(SILENT))

    @classmethod
    async def dial(cls, ws_url: str, to_number: str) -> tuple[AudioCaller, list[asyncio.Task[Any]]]:
        ws = await connect(ws_url, max_size=2**24, compression=None)
        await ws.send(
            json.dumps(
                {
                    "type": "start",
                    "api_key": BENCH_KEY,
                    "to_number": to_number,
                    "from_number": "+15555550100",
                    "audio": True,
                }
            )
        )
        caller = cls(ws)
        return caller, [asyncio.create_task(caller._receive()), asyncio.create_task(caller._pace())]

    async def _receive(self) -> None:
        async for raw in self.ws:
            now = time.monotonic()
            if isinstance(raw, str) and raw.startswith('{"type":"media"'):
                payload = json.loads(raw)["payload"]
                peak = int(np.abs(ulaw_decode(base64.b64decode(payload))).max())
                self.heard.append((now, peak))
                continue
            message = json.loads(raw)
            if message["type"] == "media":
                peak = int(np.abs(ulaw_decode(base64.b64decode(message["payload"]))).max())
                self.heard.append((now, peak))
                continue
            if message["type"] == "agent_text":
                self.texts.append(now)
            self.messages.append(message)
            if message["type"] == "ended":
                self.ended.set()
                return

    async def _pace(self) -> None:
        """One frame every 20 ms on an absolute schedule: queued speech, else silence."""
        start = time.monotonic()
        tick = 0
        while not self.ended.is_set():
            message, last = self.outgoing.popleft() if self.outgoing else (self._silent, False)
            self.pacing_late.append(time.monotonic() - (start + tick * 0.02))
            try:
                await self.ws.send(message)
            except Exception:
                return
            if last:
                self.last_speech_sent = time.monotonic()
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))

    def speak(self, utterance: Utterance) -> None:
        self.last_speech_sent = None
        frames = utterance.frames
        for index, frame in enumerate(frames):
            self.outgoing.append((media_message(frame), index == len(frames) - 1))

    def count(self, kind: str) -> int:
        return sum(1 for m in self.messages if m["type"] == kind)

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.messages if m["type"] == kind]
            if len(matching) >= count:
                return matching[count - 1]
            if time.monotonic() > deadline or self.ended.is_set():
                raise TimeoutError(f"no {kind} #{count}; last messages {self.messages[-3:]}")
            await asyncio.sleep(0.01)

    async def first_audio_after(self, since: float, timeout: float = 30) -> float:
        """Arrival time of the first played (non-silent) agent frame that arrived after `since`."""
        deadline = time.monotonic() + timeout
        checked = 0
        while time.monotonic() < deadline:
            heard = self.heard
            for at, peak in heard[checked:]:
                if at > since and peak > 0:
                    return at
            checked = len(heard)
            await asyncio.sleep(0.005)
        raise TimeoutError("the agent never spoke")

    async def wait_quiet(self, quiet_s: float = 0.6, timeout: float = 60) -> None:
        """Until the agent's side has been digital silence for `quiet_s`."""
        deadline = time.monotonic() + timeout
        frames = round(quiet_s / 0.02)
        while time.monotonic() < deadline:
            recent = self.heard[-frames:]
            if len(recent) == frames and all(peak == 0 for _, peak in recent):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("the agent never went quiet")

    async def hangup(self, timeout: float = 30) -> dict[str, Any]:
        await self.ws.send(json.dumps({"type": "hangup"}))
        await asyncio.wait_for(self.ended.wait(), timeout)
        return next(m for m in self.messages if m["type"] == "ended")
