"""Call recordings: a stereo WAV written as the call goes, and the signed links that serve it.

Channel 0 is the caller, channel 1 the agent as the caller heard it (after mixing), so a
reviewer can listen to either side alone. Audio goes to disk in chunks of about a second or
two; a 30-minute call never sits in memory.

Recordings live in `<data_dir>/recordings/<call_id>.wav`; the links are signed with the key in
`<data_dir>/recording-key`. Several servers behind one `PHONEBOOTH_PUBLIC_URL` must share that
key file (and the recordings directory, or route each link to the server holding the file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from phonebooth.core.url_signing import (
    RECORDING_URL_TTL,
    sign_recording_url,
    verify_recording_signature,
)
from phonebooth.storage.tables import Call
from phonebooth.voice.frames import FRAME_MS, SAMPLE_WIDTH, samples_per_frame

__all__ = [
    "KEY_FILENAME",
    "RECORDINGS_DIR",
    "CallRecorder",
    "RecordingStore",
    "load_recording_key",
]

log = logging.getLogger("phonebooth.voice.recording")

RECORDINGS_DIR = "recordings"
KEY_FILENAME = "recording-key"
CHANNELS = 2
_KEY_BYTES = 32
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF/WAVE, a 16-byte PCM `fmt `, `data`
_RIFF_SIZE_OFFSET = 4
_DATA_SIZE_OFFSET = _HEADER.size - 4
_MAX_DATA_BYTES = 0xFFFFFFFF - _HEADER.size  # a RIFF size is 32 bits


def _wav_header(sample_rate: int, data_bytes: int) -> bytes:
    block = CHANNELS * SAMPLE_WIDTH
    return _HEADER.pack(
        b"RIFF", _HEADER.size - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, CHANNELS, sample_rate, sample_rate * block, block, 8 * SAMPLE_WIDTH,
        b"data", data_bytes,
    )  # fmt: skip


class CallRecorder:
    """Two independent 20 ms streams in, one aligned stereo WAV out.

    `caller()` and `agent()` are called from the event loop as frames flow (any length is
    accepted and re-chunked into frames). Frame n of one channel is paired with frame n of the
    other: the stream that runs ahead is buffered until the other catches up, and `close()` pads
    the one behind with silence. A stream that stops altogether (instead of sending silence)
    would otherwise grow that buffer for the rest of the call, so past `max_lead_seconds` the
    leading stream is written against silence.

    Per frame the work is two strided copies into a preallocated chunk (about 1.5 us a push
    at 8 kHz); each full chunk (`chunk_bytes`, 2 s at 8 kHz) is one write to the page cache
    (tens of us) and patches the header, so a crash leaves a playable file. Not thread-safe:
    feed it from one thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int = 8000,
        max_lead_seconds: float = 10.0,
        chunk_bytes: int = 64 * 1024,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._frame_samples = samples_per_frame(sample_rate)
        self._frame_bytes = self._frame_samples * SAMPLE_WIDTH
        frames_per_second = 1000 / FRAME_MS
        self._max_lead = max(1, int(max_lead_seconds * frames_per_second))
        chunk_frames = max(1, chunk_bytes // (CHANNELS * self._frame_bytes))
        self._chunk = np.zeros(chunk_frames * self._frame_samples * CHANNELS, dtype="<i2")
        self._used = 0  # samples of `_chunk` filled
        self._silence = np.zeros(self._frame_samples, dtype="<i2")
        self._partial: tuple[bytearray, bytearray] = (bytearray(), bytearray())
        self._queues: tuple[deque[bytes], deque[bytes]] = (deque(), deque())
        self._data_bytes = 0
        self._full_logged = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(self._fd, _wav_header(sample_rate, 0))

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def duration_seconds(self) -> float:
        """Audio paired so far (not what one side has buffered ahead of the other)."""
        samples = self._data_bytes // SAMPLE_WIDTH + self._used
        return samples / CHANNELS / self.sample_rate

    def caller(self, pcm16: bytes) -> None:
        """What the caller said: 16-bit mono PCM at `sample_rate`, ideally one 20 ms frame."""
        self._push(0, pcm16)

    def agent(self, pcm16: bytes) -> None:
        """What the caller heard from us (agent speech with any background mixed in)."""
        self._push(1, pcm16)

    def close(self) -> Path:
        """Pad the lagging side, write what is left, finalize the header; returns the path.

        Blocking file I/O (small): from async code prefer `aclose()`. Idempotent.
        """
        if self._fd is None:
            return self.path
        for channel in (0, 1):
            rest = self._partial[channel]
            if rest:
                self._queues[channel].append(bytes(rest) + bytes(self._frame_bytes - len(rest)))
                rest.clear()
        caller, agent = self._queues
        while caller or agent:
            self._pair(caller.popleft() if caller else None, agent.popleft() if agent else None)
        self._flush()
        os.close(self._fd)
        self._fd = None
        return self.path

    async def aclose(self) -> Path:
        """`close()` on a worker thread, so a slow disk never stalls other calls' frames."""
        return await asyncio.to_thread(self.close)

    def discard(self) -> None:
        """Drop the recording (a call that must not be kept); idempotent, also after close."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._queues[0].clear()
        self._queues[1].clear()
        self.path.unlink(missing_ok=True)

    def _push(self, channel: int, pcm16: bytes) -> None:
        if self._fd is None:
            return  # a frame racing the end of the call
        mine, other = self._queues[channel], self._queues[1 - channel]
        partial = self._partial[channel]
        if not partial and len(pcm16) == self._frame_bytes:
            frames: list[bytes] = [pcm16]  # the usual case: one whole frame, no copy
        else:
            partial += pcm16
            whole = len(partial) - len(partial) % self._frame_bytes
            size = self._frame_bytes
            frames = [bytes(partial[i : i + size]) for i in range(0, whole, size)]
            del partial[:whole]
        for frame in frames:
            if other:
                self._pair_in_order(channel, frame, other.popleft())
            else:
                mine.append(frame)
        while len(mine) > self._max_lead:
            self._pair_in_order(channel, mine.popleft(), None)

    def _pair_in_order(self, channel: int, frame: bytes, other: bytes | None) -> None:
        if channel == 0:
            self._pair(frame, other)
        else:
            self._pair(other, frame)

    def _pair(self, caller: bytes | None, agent: bytes | None) -> None:
        """Interleave one frame of each side (None is silence) into the chunk."""
        n = self._frame_samples
        start = self._used
        view = self._chunk[start : start + CHANNELS * n]
        view[0::2] = self._silence if caller is None else np.frombuffer(caller, dtype="<i2")
        view[1::2] = self._silence if agent is None else np.frombuffer(agent, dtype="<i2")
        self._used = start + CHANNELS * n
        if self._used == self._chunk.size:
            self._flush()

    def _flush(self) -> None:
        fd = self._fd
        if fd is None or self._used == 0:
            return
        data = self._chunk[: self._used].data.cast("B")
        self._used = 0
        if self._data_bytes + len(data) > _MAX_DATA_BYTES:
            if not self._full_logged:
                log.warning(
                    "recording %s reached the WAV size limit; the rest is dropped", self.path
                )
                self._full_logged = True
            return
        self._data_bytes += len(data)
        while data:
            data = data[os.write(fd, data) :]
        header = _wav_header(self.sample_rate, self._data_bytes)
        os.pwrite(fd, header[_RIFF_SIZE_OFFSET : _RIFF_SIZE_OFFSET + 4], _RIFF_SIZE_OFFSET)
        os.pwrite(fd, header[_DATA_SIZE_OFFSET:], _DATA_SIZE_OFFSET)


def _parse_key(text: str, path: Path) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise ValueError(f"{path} must hold at least {_KEY_BYTES} bytes written as hex")
    return key


def load_recording_key(data_dir: Path) -> bytes:
    """The server's URL-signing key from `<data_dir>/recording-key`, created (0600) if absent.

    Written to a private temporary file and hard-linked into place, so two processes starting
    together agree on one key and neither ever reads a half-written file.
    """
    path = data_dir / KEY_FILENAME
    try:
        return _parse_key(path.read_text(encoding="ascii"), path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(_KEY_BYTES)
    temporary = path.with_name(f".{KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return _parse_key(path.read_text(encoding="ascii"), path)  # another process won
    finally:
        temporary.unlink(missing_ok=True)
    return key


class RecordingStore:
    """Where this server keeps recordings and how it hands out links to them.

    The key is read (or created) on first use, so building the app touches no file.
    `enabled` (PHONEBOOTH_RECORDINGS) governs new recordings only: links to recordings made
    before it was turned off keep working until retention removes them.
    """

    def __init__(
        self,
        data_dir: Path,
        public_url: str,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
        ttl: int = RECORDING_URL_TTL,
    ) -> None:
        self.data_dir = data_dir
        self.public_url = public_url
        self.enabled = enabled
        self.clock = clock
        self.ttl = ttl
        self.directory = (data_dir / RECORDINGS_DIR).absolute()
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_recording_key(self.data_dir)
        return self._key

    def path_for(self, call_id: int) -> Path:
        return self.directory / f"{call_id}.wav"

    def open(self, call_id: int, *, sample_rate: int = 8000) -> CallRecorder | None:
        """A recorder for a new call, or None when recordings are off."""
        if not self.enabled:
            return None
        return CallRecorder(self.path_for(call_id), sample_rate=sample_rate)

    def signed_url(self, call_id: int) -> str:
        now = int(self.clock())
        return sign_recording_url(self.public_url, call_id, key=self.key, now=now, ttl=self.ttl)

    def url_for(self, call: Call) -> str | None:
        """A freshly signed link when the call has a recording, else None (`recording_url`)."""
        return self.signed_url(call.id) if call.recording_path else None

    def verify(self, call_id: int, exp: int, sig: str) -> bool:
        now = int(self.clock())
        return verify_recording_signature(call_id, exp, sig, key=self.key, now=now)
