"""`phonebooth call` in audio mode: pacing, WAV input, the playout clock, and a whole call.

The whole call runs the real CLI process against a small scripted carrier (a Starlette
WebSocket in a uvicorn thread) that speaks the contract's audio messages, so the frames'
timing is measured on the wire, where the server will see it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from phonebooth.cli.call_audio import (
    ULAW_FRAME_BYTES,
    ULAW_SILENCE,
    AudioFileError,
    MediaSender,
    Playout,
    TimelineEvent,
    frame_due,
    load_clip,
    load_wav,
    media_message,
    ulaw_frames,
)
from phonebooth.voice.frames import Samples, array_to_pcm
from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.resample import resample
from tests.conftest import ADMIN_KEY, free_port
from tests.servers import serve_in_thread


def tone(seconds: float, rate: int, hz: float = 400.0, amplitude: float = 8000.0) -> Samples:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


# 400 Hz at 8 kHz repeats every 20 samples, so every 20 ms frame of it is the same frame.
TONE_FRAME = ulaw_encode(tone(0.02, 8000))
TONE_PCM = ulaw_decode(TONE_FRAME)


def write_wav(path: Path, samples: Samples, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(array_to_pcm(samples))
    return path


# --- pacing ---------------------------------------------------------------------------


def test_frame_due_is_an_absolute_schedule() -> None:
    assert [frame_due(1000.0, n) for n in (0, 1, 2, 50)] == [1000.0, 1020.0, 1040.0, 2000.0]


class _Done(Exception):
    pass


class FakeLine:
    """A fake clock whose every sleep oversleeps, and a sink that stops after `limit` frames."""

    def __init__(self, limit: int, oversleep: list[float]) -> None:
        self.now = 500.0
        self.limit = limit
        self.oversleep = oversleep
        self.sent: list[tuple[float, bytes]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        extra = self.oversleep[len(self.sent) % len(self.oversleep)]
        self.now += seconds * 1000 + extra
        await asyncio.sleep(0)

    async def send(self, frame: bytes) -> None:
        self.sent.append((self.now, frame))
        if len(self.sent) == self.limit:
            raise _Done


async def test_sender_keeps_to_the_schedule_however_late_it_wakes() -> None:
    line = FakeLine(200, oversleep=[3.0, 0.5, 7.0, 1.0])
    with pytest.raises(_Done):
        await MediaSender(line.send, line.clock, line.sleep).run()
    lateness = [at - frame_due(500.0, n) for n, (at, _) in enumerate(line.sent)]
    assert min(lateness) >= 0
    assert max(lateness) <= 7.0  # one oversleep, never the sum of them (that would be ~460)
    assert all(frame == ULAW_SILENCE for _, frame in line.sent)


async def test_sender_catches_up_after_a_stall_instead_of_drifting() -> None:
    line = FakeLine(20, oversleep=[0.0] * 5 + [65.0] + [0.0] * 14)
    with pytest.raises(_Done):
        await MediaSender(line.send, line.clock, line.sleep).run()
    times = [at - 500.0 for at, _ in line.sent]
    assert times[:5] == [0, 20, 40, 60, 80]
    assert times[5:9] == [165, 165, 165, 165]  # frames 5-8 were due by 165 ms: a burst
    assert times[9:] == [180 + 20 * i for i in range(11)]  # back on the original grid


async def test_sender_sends_speech_between_silence_and_marks_it() -> None:
    line = FakeLine(30, oversleep=[0.0])
    sender = MediaSender(line.send, line.clock, line.sleep)
    task = asyncio.create_task(sender.run())
    while len(line.sent) < 5:
        await asyncio.sleep(0)
    speech = [bytes([n]) * ULAW_FRAME_BYTES for n in range(1, 11)]
    await sender.speak(speech)
    with pytest.raises(_Done):
        await task
    frames = [frame for _, frame in line.sent]
    first = frames.index(speech[0])
    assert frames[first : first + 10] == speech
    assert set(frames[:first]) == set(frames[first + 10 :]) == {ULAW_SILENCE}
    start_at = line.sent[first][0]
    assert sender.events == [
        TimelineEvent(start_at, "caller_start"),
        TimelineEvent(start_at + 200, "caller_end"),
    ]
    assert (start_at, "caller_start") == sender.events[0]  # plain tuples compare equal


def test_media_message_is_the_contract_shape() -> None:
    message = json.loads(media_message(TONE_FRAME))
    assert message["type"] == "media"
    assert base64.b64decode(message["payload"]) == TONE_FRAME


# --- WAV input --------------------------------------------------------------------------


def test_8k_mono_wav_is_used_as_is(tmp_path: Path) -> None:
    samples = tone(0.5, 8000)
    assert np.array_equal(load_wav(write_wav(tmp_path / "a.wav", samples, 8000)), samples)


def test_stereo_is_averaged_then_resampled(tmp_path: Path) -> None:
    mono = tone(0.5, 16000, hz=700.0)
    left, right = mono.astype(np.int32) + 1000, mono.astype(np.int32) - 1000
    stereo = np.stack([left, right], axis=1).reshape(-1).astype(np.int16)
    loaded = load_wav(write_wav(tmp_path / "s.wav", stereo, 16000, channels=2))
    expected = resample(mono, 16000, 8000)
    assert loaded.size == 4000
    assert np.max(np.abs(loaded.astype(np.int32) - expected)) <= 1


@pytest.mark.parametrize("rate", [11025, 22050, 44100, 48000])
def test_any_rate_becomes_8k(tmp_path: Path, rate: int) -> None:
    loaded = load_wav(write_wav(tmp_path / "r.wav", tone(1.0, rate), rate))
    assert abs(loaded.size - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(loaded.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / loaded.size - 400) < 2


def test_the_shipped_caller_recording_loads(tmp_path: Path) -> None:
    clip = load_clip(Path(__file__).parent / "data" / "caller_book_appointment.wav")
    assert abs(clip.seconds - 46997 / 16000) < 0.021
    assert all(len(frame) == ULAW_FRAME_BYTES for frame in clip.frames)


def test_frames_are_padded_with_mu_law_silence() -> None:
    frames = ulaw_frames(tone(0.02, 8000)[:100].copy())
    assert len(frames) == 1
    assert frames[0][:100] == TONE_FRAME[:100]
    assert frames[0][100:] == b"\xff" * 60
    assert ulaw_encode(np.zeros(1, dtype=np.int16)) == b"\xff"
    assert len(ulaw_frames(tone(0.05, 8000))) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"RIFF nonsense", "cannot read"),
        ("8bit", "8-bit"),
        ("empty", "no audio"),
    ],
)
def test_unusable_files_say_why(tmp_path: Path, content: bytes | str | None, message: str) -> None:
    path = tmp_path / "bad.wav"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "8bit":
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(1)
            wav.setframerate(8000)
            wav.writeframes(bytes(800))
    elif content == "empty":
        write_wav(path, np.zeros(0, dtype=np.int16), 8000)
    with pytest.raises(AudioFileError, match=message):
        load_wav(path)


# --- the playout clock --------------------------------------------------------------------


def slots(playout: Playout) -> list[str]:
    """The played timeline as one letter a slot: T tone, S silence, ? anything else."""
    pcm = playout.pcm().reshape(-1, ULAW_FRAME_BYTES)
    return ["T" if np.array_equal(s, TONE_PCM) else "S" if not s.any() else "?" for s in pcm]


def test_frames_received_early_wait_their_turn() -> None:
    playout = Playout(jitter_ms=0)
    for _ in range(5):
        playout.push(TONE_FRAME, 5.0)  # a burst: 100 ms of audio at once
    playout.advance(50.0)
    assert slots(playout) == ["S", "T", "T"]  # slots at 0, 20, 40
    assert playout.buffered == 3
    playout.advance(200.0)
    assert "".join(slots(playout)) == "STTTTT" + "S" * 5
    assert playout.events == [(20.0, "agent_start"), (120.0, "agent_stop")]


def test_gaps_become_silence() -> None:
    playout = Playout(jitter_ms=0, min_gap_ms=0)
    playout.push(TONE_FRAME, 5.0)
    playout.push(TONE_FRAME, 105.0)
    playout.advance(160.0)
    assert "".join(slots(playout)) == "STSSSSTSS"
    assert playout.events == [
        (20.0, "agent_start"),
        (40.0, "agent_stop"),
        (120.0, "agent_start"),
        (140.0, "agent_stop"),
    ]
    assert playout.played_ms == 180.0


def test_jitter_buffer_holds_a_new_talk_spurt_back_and_absorbs_jitter() -> None:
    playout = Playout(jitter_ms=40)
    rng = np.random.default_rng(3)
    arrivals = [1.0 + 20 * n + float(rng.uniform(0, 35)) for n in range(50)]
    for at in sorted(arrivals):
        playout.push(TONE_FRAME, at)
    playout.advance(2000.0)
    # the first frame (t=1..36 ms) waits 40 ms, so it starts at the first slot after that
    first = playout.events[0]
    assert first.kind == "agent_start"
    assert arrivals[0] + 40 <= first.at_ms < arrivals[0] + 60
    assert playout.events == [first, (first.at_ms + 1000, "agent_stop")]  # never broke up


def test_clear_drops_what_was_not_played_yet() -> None:
    playout = Playout(jitter_ms=0, min_gap_ms=0)
    for _ in range(25):
        playout.push(TONE_FRAME, 1.0)  # 500 ms of agent audio sent ahead of time
    assert playout.clear(70.0) == 22  # slots 20, 40 and 60 had played; 60 finishes
    playout.push(TONE_FRAME, 130.0)  # the carrier may still send a frame after clearing
    playout.advance(220.0)
    assert "".join(slots(playout)) == "STTTSSSTSSSS"
    assert playout.dropped == 22
    assert playout.events == [
        (20.0, "agent_start"),
        (70.0, "clear"),
        (80.0, "agent_stop"),
        (140.0, "agent_start"),
        (160.0, "agent_stop"),
    ]


def test_pauses_between_words_do_not_end_a_talk_spurt() -> None:
    playout = Playout(jitter_ms=0)  # min_gap_ms=100
    pattern = "TTT.TT..TTTT.....TT"  # 20 ms frames: word pauses of 20 and 40 ms, one of 100
    for n, kind in enumerate(pattern):
        playout.push(TONE_FRAME if kind == "T" else ULAW_SILENCE, 20.0 * n + 1)
        if n == 10:
            assert playout.audible_since(20.0 * n + 1) == 20.0  # one spurt, through the pauses
    playout.advance(380.0)
    assert playout.events == [
        (20.0, "agent_start"),
        (260.0, "agent_stop"),  # known at 360, after 100 ms of silence
        (360.0, "agent_start"),
    ]
    assert playout.audible_since(380.0) == 360.0
    playout.finish(410.0)  # the call ends 10 ms into a silence: that still ends the spurt
    assert playout.events == [
        (20.0, "agent_start"),
        (260.0, "agent_stop"),
        (360.0, "agent_start"),
        (400.0, "agent_stop"),
    ]


def test_silent_frames_play_but_are_not_agent_audio() -> None:
    playout = Playout(jitter_ms=0)
    for n in range(4):
        playout.push(ULAW_SILENCE, 20.0 * n + 1)
    playout.advance(100.0)
    assert playout.events == []
    assert playout.quiet_ms(100.0) == 100.0


def test_quiet_ms_counts_from_the_end_of_the_last_audible_slot() -> None:
    playout = Playout(jitter_ms=0)
    playout.push(TONE_FRAME + TONE_FRAME, 1.0)  # a 40 ms payload: two slots
    assert playout.quiet_ms(10.0) == 0.0  # audible audio is waiting
    assert playout.quiet_ms(30.0) == 0.0  # ... and now playing
    assert playout.audible_since(30.0) == 20.0
    assert playout.quiet_ms(95.0) == 35.0  # the second frame ended at 60
    assert playout.audible_since(95.0) == 20.0  # a pause so far, not yet the spurt's end
    assert playout.audible_since(165.0) is None


def test_a_short_payload_is_padded_to_a_whole_slot() -> None:
    playout = Playout(jitter_ms=0)
    playout.push(TONE_FRAME[:80], 1.0)
    playout.advance(40.0)
    played = playout.pcm()[ULAW_FRAME_BYTES : 2 * ULAW_FRAME_BYTES]
    assert np.array_equal(played[:80], TONE_PCM[:80])
    assert not played[80:].any()


# --- a whole call against a scripted carrier ------------------------------------------


def audible(frame: bytes) -> bool:
    return bool(np.max(np.abs(ulaw_decode(frame).astype(np.int32))) > 1000)


@dataclass
class ScriptedCarrier:
    """Plays the carrier's side: greeting, talking over the caller, clear, a reply, ended.

    `greeting` frames are paced in real time and stop when the caller starts speaking (then
    `clear`); `burst` frames are sent all at once when the caller starts, and cleared 100 ms
    later; the reply follows the caller's speech.
    """

    greeting: int = 10
    burst: int = 0
    reply: int = 10
    port: int = field(default_factory=free_port)
    start: dict[str, Any] | None = None
    received: list[tuple[float, bytes]] = field(default_factory=list)
    sent_clear: int = 0
    interrupted: bool = False
    hung_up: bool = False

    def app(self) -> Starlette:
        return Starlette(routes=[WebSocketRoute("/v1/sim/call", self.handle)])

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        self.start = json.loads(await ws.receive_text())
        speaking, done, hangup = asyncio.Event(), asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(self.read(ws, speaking, done, hangup))
        await ws.send_json(
            {"type": "setup", "call_id": 7, "config_source": "default", "config_error": None}
            | {"config": None, "webhook_latency_ms": None, "speak_order": "agent_first"}
        )
        await ws.send_json({"type": "agent_text", "delta": "Hello, how can I help?"})
        self.interrupted = not await self.paced(ws, self.greeting, stop=speaking)
        if self.interrupted:
            await self.clear(ws)
        await ws.send_json({"type": "agent_turn_end"})
        await asyncio.wait_for(speaking.wait(), 20)
        if self.burst:
            for _ in range(self.burst):
                await self.media(ws, TONE_FRAME)
            await asyncio.sleep(0.1)
            await self.clear(ws)
        await asyncio.wait_for(done.wait(), 20)
        await ws.send_json({"type": "agent_text", "delta": "Sure."})
        await self.paced(ws, self.reply)
        await ws.send_json({"type": "agent_turn_end"})
        await asyncio.wait_for(hangup.wait(), 20)
        reader.cancel()
        ended = {"type": "ended", "id": 7, "status": "completed", "end_reason": "caller_hangup"}
        await ws.send_json(ended | {"duration_seconds": 3, "transcripts": []})
        await ws.close()

    async def read(
        self, ws: WebSocket, speaking: asyncio.Event, done: asyncio.Event, hangup: asyncio.Event
    ) -> None:
        try:
            async for text in ws.iter_text():
                message = json.loads(text)
                if message["type"] == "hangup":
                    self.hung_up = True
                    hangup.set()
                elif message["type"] == "media":
                    frame = base64.b64decode(message["payload"])
                    self.received.append((time.monotonic(), frame))
                    if audible(frame):
                        speaking.set()
                    elif speaking.is_set():
                        done.set()
        except WebSocketDisconnect:
            hangup.set()

    async def media(self, ws: WebSocket, frame: bytes) -> None:
        await ws.send_json({"type": "media", "payload": base64.b64encode(frame).decode()})

    async def clear(self, ws: WebSocket) -> None:
        self.sent_clear += 1
        await ws.send_json({"type": "clear"})

    async def paced(self, ws: WebSocket, frames: int, stop: asyncio.Event | None = None) -> bool:
        start = time.monotonic()
        for n in range(frames):
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            if stop is not None and stop.is_set():
                return False
            await self.media(ws, TONE_FRAME)
        return True

    def speech_frames(self) -> list[tuple[float, bytes]]:
        return [(at, frame) for at, frame in self.received if audible(frame)]


def run_call(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
    env["PHONEBOOTH_API_KEY"] = ADMIN_KEY
    return subprocess.run(
        [
            *(sys.executable, "-m", "phonebooth", "call", "--to", "+15555550200"),
            *("--server", f"http://127.0.0.1:{port}", "--turn-timeout", "10", *args),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def read_wav(path: Path) -> tuple[int, int, Samples]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getnchannels(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    return params[0], params[1], np.frombuffer(data, dtype="<i2").astype(np.int16)


def played_slots(samples: Samples) -> str:
    usable = samples[: samples.size - samples.size % ULAW_FRAME_BYTES]
    return "".join(
        "T" if np.array_equal(s, TONE_PCM) else "S" if not s.any() else "?"
        for s in usable.reshape(-1, ULAW_FRAME_BYTES)
    )


def test_audio_call_end_to_end(tmp_path: Path) -> None:
    carrier = ScriptedCarrier(greeting=10, burst=25, reply=10)
    speech = write_wav(
        tmp_path / "caller.wav",
        np.repeat(tone(0.4, 16000, hz=1000.0), 2),  # stereo, 16 kHz, 400 ms
        16000,
        channels=2,
    )
    record, timeline = tmp_path / "heard.wav", tmp_path / "timeline.json"
    with serve_in_thread(carrier.app(), carrier.port):
        result = run_call(
            carrier.port,
            "--audio",
            str(speech),
            "--record",
            str(record),
            "--timeline",
            str(timeline),
            "--json",
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["end_reason"] == "caller_hangup"  # stdout: only the call
    assert "caller: [caller.wav, 0.40 s of audio]" in result.stderr
    assert carrier.start is not None and carrier.start["audio"] is True
    assert carrier.hung_up and not carrier.interrupted and carrier.sent_clear == 1

    # What the caller sent: exactly the clip's 20 frames, 20 ms apart on the wire (a frame
    # late by a scheduling hiccup is allowed; the schedule then catches up, not drifts).
    spoken = carrier.speech_frames()
    assert len(spoken) == 20
    at_ms = 1000 * np.array([at for at, _ in spoken])
    offsets = at_ms - 20.0 * np.arange(20)
    offsets = offsets - np.median(offsets)
    assert np.mean(np.abs(offsets) < 10) >= 0.6, offsets
    assert abs(at_ms[-1] - at_ms[0] - 380) < 80
    everything = [at for at, _ in carrier.received]
    span_frames = 1000 * (everything[-1] - everything[0]) / 20 + 1
    assert abs(len(everything) - span_frames) <= 3  # silence kept the same pace

    # What the caller heard: the greeting, part of the talk-over until `clear`, the reply.
    events = read_events(timeline)
    kinds = [kind for _, kind in events]
    assert kinds.count("clear") == 1 and kinds.count("caller_start") == 1
    first = {kind: ms for ms, kind in reversed(events)}
    assert first["agent_start"] < first["caller_start"] < first["clear"] < first["caller_end"]
    assert first["caller_end"] - first["caller_start"] == pytest.approx(400, abs=20)
    assert not audible_at(events, first["clear"] + 20)  # stopped at the next slot

    channels, rate, heard = read_wav(record)
    assert (channels, rate) == (1, 8000)
    played = played_slots(heard)
    assert set(played) <= {"T", "S"}
    assert tones_between(played, 0, first["caller_start"]) == 10  # the whole greeting
    assert tones_between(played, first["caller_end"], 10**6) == 10  # the whole reply
    talk_over = tones_between(played, first["caller_start"], first["caller_end"])
    assert 1 <= talk_over <= 8, played  # about 100 ms less the 40 ms jitter hold, not 500 ms


def test_barge_in_talks_over_the_greeting(tmp_path: Path) -> None:
    carrier = ScriptedCarrier(greeting=150, burst=0, reply=10)  # a 3 s greeting
    speech = write_wav(tmp_path / "interrupt.wav", tone(0.3, 8000, hz=1000.0), 8000)
    timeline, record = tmp_path / "timeline.json", tmp_path / "heard.wav"
    with serve_in_thread(carrier.app(), carrier.port):
        result = run_call(
            carrier.port,
            "--audio",
            str(speech),
            "--barge-in-ms",
            "300",
            "--timeline",
            str(timeline),
            "--record",
            str(record),
        )
    assert result.returncode == 0, result.stderr
    assert "Call ended: caller_hangup" in result.stdout
    assert carrier.interrupted and carrier.hung_up

    events = read_events(timeline)
    first = {kind: ms for ms, kind in reversed(events)}
    # the caller starts at the first 20 ms frame of its line 300 ms into the greeting
    assert 295 <= first["caller_start"] - first["agent_start"] <= 360
    assert first["caller_start"] < first["clear"]
    assert not audible_at(events, first["clear"] + 20)
    played = played_slots(read_wav(record)[2])
    assert tones_between(played, 0, first["caller_start"]) >= 10
    assert tones_between(played, first["clear"] + 20, first["caller_end"]) == 0
    # the interrupted greeting's turn end was not taken for the reply's: it was heard in full
    assert tones_between(played, first["caller_end"], 10**6) == 10


def read_events(path: Path) -> list[tuple[float, str]]:
    return [(event["at_ms"], event["kind"]) for event in json.loads(path.read_text())["events"]]


def audible_at(events: list[tuple[float, str]], ms: float) -> bool:
    """Whether agent audio was playing at `ms`, by the timeline's start and stop events."""
    playing = False
    for at, kind in events:
        if at > ms:
            break
        if kind in ("agent_start", "agent_stop"):
            playing = kind == "agent_start"
    return playing


def tones_between(played: str, from_ms: float, to_ms: float) -> int:
    return played[int(from_ms // 20) : int(to_ms // 20)].count("T")


def test_say_and_audio_are_exclusive_and_bad_files_fail_before_dialling(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens: a check that dialled would say "Cannot reach"
    clip = write_wav(tmp_path / "ok.wav", tone(0.1, 8000), 8000)
    both = run_call(port, "--say", "hi", "--audio", str(clip))
    assert both.returncode == 1
    assert "--say and --audio cannot be combined" in both.stdout
    missing = run_call(port, "--audio", str(tmp_path / "missing.wav"))
    assert missing.returncode == 1
    assert "missing.wav: cannot read" in missing.stdout
    barge = run_call(port, "--say", "hi", "--barge-in-ms", "100")
    assert barge.returncode == 1
    assert "--barge-in-ms needs --audio" in barge.stdout
    assert "Cannot reach" not in both.stdout + missing.stdout + barge.stdout
