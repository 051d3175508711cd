"""The caller's phone for `phonebooth call` in audio mode (contract section 8).

Outgoing: a WAV file becomes 8 kHz mu-law frames of 20 ms, sent on an absolute schedule
(frame n at start + n * 20 ms) so a late wake-up never shifts the frames after it; between
utterances the line carries silence, as an open phone line does.

Incoming: the agent's frames go through a jitter buffer and are "played" on a 20 ms playout
clock (`Playout`), so the recording and the timeline show what a caller would have heard and
when: early frames wait their turn, gaps are silence, `clear` drops what was not yet played.
Times are milliseconds on the line's clock (0 when the call's setup arrived), which is also
the clock of the caller's own `caller_start`/`caller_end` marks, so a benchmark can read
"agent audio stopped N ms after the caller started speaking" straight off the events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import wave
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from websockets.exceptions import ConnectionClosed

from phonebooth.voice.frames import (
    FRAME_MS,
    Samples,
    array_to_pcm,
    dbfs,
    pcm_to_array,
    samples_per_frame,
    saturate,
)
from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.resample import resample

__all__ = [
    "AUDIBLE_DBFS",
    "DEFAULT_JITTER_MS",
    "DEFAULT_MIN_GAP_MS",
    "LINE_RATE",
    "ULAW_FRAME_BYTES",
    "ULAW_SILENCE",
    "AudioFileError",
    "AudioLine",
    "Clip",
    "EventKind",
    "MediaSender",
    "Playout",
    "TimelineEvent",
    "frame_due",
    "load_clip",
    "load_wav",
    "media_message",
    "ulaw_frames",
    "write_timeline",
    "write_wav",
]

LINE_RATE = 8000  # the carrier's rate: G.711 narrowband
ULAW_FRAME_BYTES = samples_per_frame(LINE_RATE)  # 160: one byte a sample
ULAW_SILENCE = b"\xff" * ULAW_FRAME_BYTES  # mu-law code of 0
DEFAULT_JITTER_MS = 40  # what a phone typically holds back before starting a talk spurt
AUDIBLE_DBFS = -50.0  # quieter frames count as silence for the events (the mixer's pause level)
DEFAULT_MIN_GAP_MS = 100  # shorter silences (pauses between words) do not end a talk spurt
_SILENT_PCM = np.zeros(ULAW_FRAME_BYTES, dtype=np.int16)
_POLL_S = 0.01

EventKind = Literal["agent_start", "agent_stop", "clear", "caller_start", "caller_end"]
MsClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TimelineEvent(NamedTuple):
    """One moment on the line's clock; compares equal to a plain `(at_ms, kind)` tuple.

    agent_start: first audible agent frame played after silence (its slot's start).
    agent_stop: first slot after audible agent audio that plays none (silence, gap, cleared),
    once the silence has lasted the playout's `min_gap_ms` (pauses between words do not count).
    clear: a `clear` arrived. caller_start/caller_end: the caller's speech went out.
    """

    at_ms: float
    kind: EventKind


class AudioFileError(ValueError):
    """A WAV file the caller cannot speak from; the text says which file and why."""


def load_wav(path: Path) -> Samples:
    """A 16-bit PCM WAV of any rate and channel count as 8 kHz mono int16 samples."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioFileError(f"{path}: cannot read as a WAV file ({exc})") from None
    if width != 2:
        raise AudioFileError(f"{path}: {8 * width}-bit samples; 16-bit PCM is needed")
    usable = len(data) - len(data) % (2 * channels)
    samples = pcm_to_array(data[:usable])
    if samples.size == 0:
        raise AudioFileError(f"{path}: no audio in the file")
    if channels > 1:
        samples = saturate(samples.reshape(-1, channels).astype(np.float64).mean(axis=1))
    return resample(samples, rate, LINE_RATE)


def ulaw_frames(samples: Samples) -> list[bytes]:
    """8 kHz samples as 160-byte mu-law frames, the last padded with silence."""
    return _split(ulaw_encode(samples))


def _split(ulaw: bytes) -> list[bytes]:
    tail = len(ulaw) % ULAW_FRAME_BYTES
    if tail:
        ulaw += ULAW_SILENCE[tail:]
    return [ulaw[i : i + ULAW_FRAME_BYTES] for i in range(0, len(ulaw), ULAW_FRAME_BYTES)]


@dataclass(frozen=True)
class Clip:
    """One caller utterance ready to send, loaded before the call so a bad file fails early."""

    name: str
    frames: tuple[bytes, ...]

    @property
    def seconds(self) -> float:
        return len(self.frames) * FRAME_MS / 1000


def load_clip(path: Path) -> Clip:
    return Clip(path.name, tuple(ulaw_frames(load_wav(path))))


def media_message(frame: bytes) -> str:
    """A mu-law frame as the carrier's `media` message."""
    return json.dumps({"type": "media", "payload": base64.b64encode(frame).decode("ascii")})


def frame_due(start_ms: float, index: int) -> float:
    """When frame `index` goes out: an absolute schedule, so lateness never accumulates."""
    return start_ms + index * FRAME_MS


class MediaSender:
    """Streams the caller's side: speech when some is queued, silence otherwise, 50 frames/s.

    A sender that falls behind (a stalled loop) catches up with a burst rather than drifting,
    as the receiving carrier's clock keeps running too.
    """

    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], clock: MsClock, sleep: Sleep
    ) -> None:
        self._send = send
        self._clock = clock
        self._sleep = sleep
        self._speech: deque[bytes] = deque()
        self._speech_done: asyncio.Event | None = None
        self._starting = False
        self._stopped = False
        self.events: list[TimelineEvent] = []
        self.sent = 0

    async def speak(self, frames: Sequence[bytes]) -> None:
        """Queue an utterance and return once its last frame is sent."""
        if not frames or self._stopped:
            return
        done = asyncio.Event()
        self._speech.extend(frames)
        self._speech_done, self._starting = done, True
        await done.wait()

    async def run(self) -> None:
        """Send until cancelled; an utterance waiting in `speak` is released either way."""
        start = self._clock()
        try:
            while True:
                delay_ms = frame_due(start, self.sent) - self._clock()
                if delay_ms > 0:
                    await self._sleep(delay_ms / 1000)
                await self._send_next()
        finally:
            self._stopped = True
            self._speech.clear()
            if self._speech_done is not None:
                self._speech_done.set()

    async def _send_next(self) -> None:
        speaking = bool(self._speech)
        frame = self._speech.popleft() if speaking else ULAW_SILENCE
        sent_at = self._clock()
        if speaking and self._starting:
            self.events.append(TimelineEvent(sent_at, "caller_start"))
            self._starting = False
        await self._send(frame)
        self.sent += 1
        if speaking and not self._speech:
            self.events.append(TimelineEvent(sent_at + FRAME_MS, "caller_end"))
            if self._speech_done is not None:
                self._speech_done.set()


@dataclass
class _Queued:
    pcm: Samples
    audible: bool
    ready_ms: float


class Playout:
    """Jitter buffer and playout clock for the agent's audio; pure, time comes in as arguments.

    Slot k covers [start + 20k, start + 20k + 20) and plays the oldest buffered frame, or
    silence. A frame that arrives while nothing is playing (a new talk spurt) waits `jitter_ms`
    before its slot, so ordinary network jitter does not break the spurt into pieces.
    Frames quieter than `audible_dbfs` play (into the timeline) but are silence for the events.
    """

    def __init__(
        self,
        *,
        start_ms: float = 0.0,
        jitter_ms: float = DEFAULT_JITTER_MS,
        audible_dbfs: float = AUDIBLE_DBFS,
        min_gap_ms: float = DEFAULT_MIN_GAP_MS,
    ) -> None:
        self.start_ms = start_ms
        self.jitter_ms = jitter_ms
        self.audible_dbfs = audible_dbfs
        self.min_gap_ms = min_gap_ms
        self.dropped = 0  # frames a `clear` removed before they played
        self._events: list[TimelineEvent] = []
        self._next_ms = start_ms  # start of the first slot not yet played
        self._queue: deque[_Queued] = deque()
        self._slots: list[Samples] = []
        self._running = False  # the last slot played a received frame
        self._audible = False  # the last slot played audible audio
        self._spurt_since: float | None = None  # start of the talk spurt under way
        self._gap_from: float | None = None  # start of a silence inside it, not yet a stop
        self._audible_until = start_ms

    def push(self, ulaw: bytes, now_ms: float) -> None:
        """A frame arrived (longer payloads are split into 20 ms frames, a short one padded)."""
        self.advance(now_ms)
        for frame in _split(ulaw):
            pcm = ulaw_decode(frame)
            idle = not self._running and not self._queue
            ready = now_ms + self.jitter_ms if idle else now_ms
            self._queue.append(_Queued(pcm, dbfs(pcm) > self.audible_dbfs, ready))

    def clear(self, now_ms: float) -> int:
        """Barge-in: drop every buffered frame (the slot playing now finishes); return how many."""
        self.advance(now_ms)
        dropped = len(self._queue)
        self._queue.clear()
        self.dropped += dropped
        self._events.append(TimelineEvent(now_ms, "clear"))
        return dropped

    def advance(self, now_ms: float) -> None:
        """Play every slot that has started by `now_ms`."""
        while self._next_ms <= now_ms:
            self._play_slot()

    def finish(self, now_ms: float) -> None:
        """The line is down: play up to `now_ms`; a silence that began in a spurt ends it."""
        self.advance(now_ms)
        if self._gap_from is not None:
            self._stop()

    def audible_since(self, now_ms: float) -> float | None:
        """When the agent's talk spurt under way started, or None when the agent is silent."""
        self.advance(now_ms)
        return self._spurt_since

    def quiet_ms(self, now_ms: float) -> float:
        """How long no audible agent audio has played, 0 while some plays or waits its turn."""
        self.advance(now_ms)
        if self._audible or any(item.audible for item in self._queue):
            return 0.0
        return max(0.0, now_ms - self._audible_until)

    @property
    def events(self) -> list[TimelineEvent]:
        """agent_start, agent_stop and clear, in time order (a stop is known only later)."""
        return sorted(self._events, key=lambda event: event.at_ms)

    @property
    def buffered(self) -> int:
        return len(self._queue)

    @property
    def played_ms(self) -> float:
        return len(self._slots) * FRAME_MS

    def pcm(self) -> Samples:
        """The played timeline so far: 8 kHz int16, one 20 ms slot after another."""
        if not self._slots:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._slots)

    def _play_slot(self) -> None:
        slot = self._next_ms
        head = self._queue[0] if self._queue else None
        if head is not None and head.ready_ms <= slot:
            self._queue.popleft()
            self._slots.append(head.pcm)
            self._running, audible = True, head.audible
        else:
            self._slots.append(_SILENT_PCM)
            self._running, audible = False, False
        self._audible = audible
        self._next_ms = slot + FRAME_MS
        if audible:
            if self._spurt_since is None:
                self._events.append(TimelineEvent(slot, "agent_start"))
                self._spurt_since = slot
            self._gap_from = None
            self._audible_until = slot + FRAME_MS
        elif self._spurt_since is not None:
            if self._gap_from is None:
                self._gap_from = slot
            if self._next_ms - self._gap_from >= self.min_gap_ms:
                self._stop()

    def _stop(self) -> None:
        assert self._gap_from is not None
        self._events.append(TimelineEvent(self._gap_from, "agent_stop"))
        self._spurt_since = self._gap_from = None


class AudioLine:
    """The caller's phone for one call: a `MediaSender` out, a `Playout` in, one clock.

    `begin` starts the line when the call is set up; `close` hangs it up (later frames are
    ignored). `clock` is in seconds (time.monotonic), injectable for tests.
    """

    def __init__(
        self,
        *,
        jitter_ms: float = DEFAULT_JITTER_MS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._origin: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._sender: MediaSender | None = None
        self._closed = False
        self.playout = Playout(jitter_ms=jitter_ms)
        self.bad_frames = 0

    def now_ms(self) -> float:
        if self._origin is None:
            self._origin = self._clock()
        return (self._clock() - self._origin) * 1000

    def begin(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Start the line clock and the outgoing stream (silence until `speak`)."""
        if self._sender is not None or self._closed:
            return
        self.now_ms()

        async def send_frame(frame: bytes) -> None:
            await send(media_message(frame))

        self._sender = MediaSender(send_frame, self.now_ms, self._sleep)
        self._task = asyncio.create_task(self._run(self._sender))

    @staticmethod
    async def _run(sender: MediaSender) -> None:
        with contextlib.suppress(ConnectionClosed):
            await sender.run()

    def on_media(self, payload: object) -> None:
        if self._closed:
            return
        try:
            frame = base64.b64decode(str(payload), validate=True)
        except (binascii.Error, ValueError):
            self.bad_frames += 1
            return
        self.playout.push(frame, self.now_ms())

    def on_clear(self) -> None:
        if not self._closed:
            self.playout.clear(self.now_ms())

    async def speak(self, clip: Clip) -> None:
        """Send an utterance in real time; returns when it is all out (or the line is down)."""
        if self._sender is not None and not self._closed:
            await self._sender.speak(clip.frames)

    async def wait_quiet(self, hold_ms: float, timeout_s: float) -> bool:
        """Wait until no agent audio has played for `hold_ms`, counted from now at the earliest.

        A reply's tail still in the jitter buffer, or audio that starts a little after
        `agent_turn_end`, gets to play. False when `timeout_s` ran out first.
        """
        since = self.now_ms()
        deadline = since + timeout_s * 1000
        while True:
            now = self.now_ms()
            if min(self.playout.quiet_ms(now), now - since) >= hold_ms:
                return True
            if now >= deadline:
                return False
            await self._sleep(_POLL_S)

    async def wait_agent_audio(self, timeout_s: float) -> float | None:
        """Wait until agent audio is playing; return when it started (line ms), None on timeout."""
        deadline = self.now_ms() + timeout_s * 1000
        while (started := self.playout.audible_since(self.now_ms())) is None:
            if self.now_ms() >= deadline:
                return None
            await self._sleep(_POLL_S)
        return started

    async def close(self) -> None:
        """Hang the line up: stop sending, play the agent's audio up to now, ignore the rest."""
        if self._closed:
            return
        self._closed = True
        if self._origin is not None:
            self.playout.finish(self.now_ms())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def events(self) -> list[TimelineEvent]:
        """The caller's marks and the playout's events, in time order."""
        caller = self._sender.events if self._sender is not None else []
        return sorted([*caller, *self.playout.events], key=lambda event: event.at_ms)

    @property
    def frames_sent(self) -> int:
        return self._sender.sent if self._sender is not None else 0

    def save(self, record: Path | None, timeline: Path | None) -> None:
        """Write the played timeline (WAV) and the events (JSON) that were asked for."""
        if record is not None:
            write_wav(record, self.playout.pcm())
        if timeline is not None:
            write_timeline(timeline, self.events)


def write_wav(path: Path, samples: Samples, rate: int = LINE_RATE) -> None:
    """Mono 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(array_to_pcm(samples))


def write_timeline(path: Path, events: Sequence[TimelineEvent]) -> None:
    """The events as JSON, for benchmarks that run the CLI as a process."""
    body = {
        "frame_ms": FRAME_MS,
        "events": [{"at_ms": round(event.at_ms, 3), "kind": event.kind} for event in events],
    }
    path.write_text(json.dumps(body, indent=1) + "\n")
