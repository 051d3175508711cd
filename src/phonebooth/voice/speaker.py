"""The agent's side: text in, paced 20 ms frames out, and a record of what was really played.

Sentences are synthesized one after another while earlier ones play. Every 20 ms exactly one
frame goes out (speech, or the background/silence between utterances), on an absolute
schedule so pacing never drifts. A barge-in drops everything not yet played; the text of each
segment (one model step's reply) is then cut to the words the caller actually heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from phonebooth.providers.tts.base import TTS, TTSError
from phonebooth.voice.frames import FRAME_MS, FrameBuffer
from phonebooth.voice.mixer import BackgroundMixer
from phonebooth.voice.resample import StreamResampler
from phonebooth.voice.sentences import SentenceSplitter

__all__ = ["AgentSpeaker", "SegmentPlayed"]

log = logging.getLogger("phonebooth.voice.speaker")


@dataclass
class _Sentence:
    segment: int
    text: str
    frames: deque[bytes] = field(default_factory=deque)
    total_frames: int = 0
    played_frames: int = 0
    synthesized: bool = False
    dropped: bool = False

    def heard_text(self) -> str:
        """The words the caller heard: all of them, or a share as long as the audio played."""
        if self.played_frames == 0:
            return ""
        if self.synthesized and not self.dropped and self.played_frames >= self.total_frames:
            return self.text
        words = self.text.split()
        share = self.played_frames / max(self.total_frames, 1)
        return " ".join(words[: int(len(words) * share)])


@dataclass
class _Segment:
    number: int
    sentences: list[_Sentence] = field(default_factory=list)
    closed: bool = False
    reported: bool = False


@dataclass(frozen=True)
class SegmentPlayed:
    """One model step's reply after playback: the text heard, and whether it was cut off."""

    segment: int
    text: str
    interrupted: bool


class AgentSpeaker:
    """Owns the outgoing audio of one call."""

    def __init__(
        self,
        tts: TTS,
        voice: str,
        mixer: BackgroundMixer,
        send_frame: Callable[[bytes], Awaitable[None]],
        *,
        sample_rate: int = 8000,
        on_segment: Callable[[SegmentPlayed], None] | None = None,
        on_first_audio: Callable[[float, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tts = tts
        self.voice = voice
        self.mixer = mixer
        self.sample_rate = sample_rate
        self._send_frame = send_frame
        self._on_segment = on_segment
        self._on_first_audio = on_first_audio
        self._clock = clock
        self._splitter = SentenceSplitter()
        self._segments: dict[int, _Segment] = {}
        self._to_synthesize: asyncio.Queue[_Sentence] = asyncio.Queue()
        self._playing: deque[_Sentence] = deque()
        self._current_segment: int | None = None
        self._wants_first_audio = False
        self._text_ready_at: float | None = None
        self._tts_first_ms: float | None = None
        self.speaking = False
        self._floor = 0
        self.generation = 0  # bumps on every interruption; stale synthesis is thrown away

    # -- text in ----------------------------------------------------------------------------

    def say(self, segment: int, delta: str) -> None:
        if segment < self._floor:
            return  # text of a segment the caller already interrupted
        if self._current_segment != segment:
            self._flush_splitter()
            self._current_segment = segment
            self._segments.setdefault(segment, _Segment(segment))
        for sentence in self._splitter.feed(delta):
            self._queue(segment, sentence)

    def close_segment(self, segment: int) -> None:
        """No more text for this segment; it is reported once its audio has played."""
        if self._current_segment == segment:
            self._flush_splitter()
            self._current_segment = None
        if segment in self._segments:
            self._segments[segment].closed = True
            self._report_finished()

    def expect_turn(self) -> None:
        """The next audio starts a new agent turn: measure its first-audio time."""
        self._wants_first_audio = True
        self._text_ready_at = None
        self._tts_first_ms = None

    def _flush_splitter(self) -> None:
        if self._current_segment is not None:
            for sentence in self._splitter.flush():
                self._queue(self._current_segment, sentence)

    def _queue(self, segment: int, text: str) -> None:
        sentence = _Sentence(segment, text)
        self._segments.setdefault(segment, _Segment(segment)).sentences.append(sentence)
        if self._text_ready_at is None:
            self._text_ready_at = self._clock()
        self._to_synthesize.put_nowait(sentence)
        self._playing.append(sentence)

    # -- barge-in -----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Drop every frame and sentence not yet played; report what was heard."""
        self.generation += 1
        current = [] if self._current_segment is None else [self._current_segment]
        known = [*self._segments, *current]
        self._floor = max([self._floor - 1, *known]) + 1
        self._splitter = SentenceSplitter()
        self._current_segment = None
        for sentence in self._playing:
            sentence.dropped = True
            sentence.frames.clear()
        self._playing.clear()
        while not self._to_synthesize.empty():
            self._to_synthesize.get_nowait()
        for segment in self._segments.values():
            segment.closed = True
        self._report_finished(interrupted=True)
        self.speaking = False

    def pending_audio(self) -> bool:
        return bool(self._playing)

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        synthesizer = asyncio.create_task(self._synthesize_all())
        try:
            await self._pace()
        finally:
            synthesizer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await synthesizer

    async def _synthesize_all(self) -> None:
        while True:
            sentence = await self._to_synthesize.get()
            if sentence.dropped:
                continue
            generation = self.generation
            resampler: StreamResampler | None = None
            framer = FrameBuffer(self.sample_rate)
            try:
                async for chunk in self.tts.synthesize(sentence.text, self.voice):
                    if generation != self.generation or sentence.dropped:
                        break
                    if self._tts_first_ms is None:
                        self._tts_first_ms = chunk.elapsed_ms
                    if resampler is None:
                        resampler = StreamResampler(chunk.sample_rate, self.sample_rate)
                    self._add_frames(
                        sentence, framer.push(resampler.process(chunk.pcm16).tobytes())
                    )
                if resampler is not None and not sentence.dropped:
                    self._add_frames(sentence, framer.push(resampler.flush().tobytes()))
                    tail = framer.flush()
                    if tail:
                        self._add_frames(sentence, [tail])
            except TTSError as exc:
                log.warning("speech synthesis failed: %s", exc.detail)
            sentence.synthesized = True
            self._report_finished()

    def _add_frames(self, sentence: _Sentence, frames: list[bytes]) -> None:
        samples = b"".join(frames)
        if not samples:
            return
        sentence.frames.extend(frames)
        sentence.total_frames += len(frames)

    async def _pace(self) -> None:
        started = self._clock()
        tick = 0
        while True:
            frame = self._next_speech_frame()
            self.speaking = frame is not None
            mixed = self.mixer.next_frame(frame)
            await self._send_frame(mixed.tobytes())
            tick += 1
            delay = started + tick * FRAME_MS / 1000 - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)

    def _next_speech_frame(self) -> bytes | None:
        while self._playing:
            head = self._playing[0]
            if head.frames:
                head.played_frames += 1
                frame = head.frames.popleft()
                if self._wants_first_audio:
                    self._wants_first_audio = False
                    if self._on_first_audio is not None:
                        self._on_first_audio(self._clock(), self._tts_first_ms or 0.0)
                return frame
            if head.synthesized:  # finished playing this sentence
                self._playing.popleft()
                self._report_finished()
                continue
            return None  # still being synthesized: a gap (background or silence)
        return None

    def _report_finished(self, interrupted: bool = False) -> None:
        for segment in list(self._segments.values()):
            if segment.reported or not segment.closed:
                continue
            done = all(s.dropped or (s.synthesized and not s.frames) for s in segment.sentences)
            if not done:
                continue
            segment.reported = True
            cut = interrupted or any(s.dropped for s in segment.sentences)
            text = " ".join(t for t in (s.heard_text() for s in segment.sentences) if t)
            if self._on_segment is not None:
                self._on_segment(SegmentPlayed(segment.number, text, cut))
            del self._segments[segment.number]
