"""Audio calls over the simulated carrier with the real offline engines (piper, whisper)."""

from __future__ import annotations

import asyncio
import io
import re
import wave

import numpy as np

from tests.conftest import LiveServer
from tests.llm_server import ScriptedLLMServer
from tests.voice_client import audio_call, level, load_frames

SPOKEN = "Hi, I would like to book an appointment for tomorrow"


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    distance = np.arange(len(hyp) + 1)
    for i, word in enumerate(ref, start=1):
        previous, distance = distance, np.zeros(len(hyp) + 1, dtype=int)
        distance[0] = i
        for j, other in enumerate(hyp, start=1):
            distance[j] = min(
                previous[j] + 1, distance[j - 1] + 1, previous[j - 1] + (word != other)
            )
    return float(distance[-1]) / max(len(ref), 1)


async def test_audio_call_hears_the_caller_and_speaks(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    agent = await live.add_agent(
        first_message="Bright Smile Dental, how can I help?", voice="en-US-Standard-Journey-D"
    )
    await live.add_number("+15555550200", agent["id"])
    llm.reply_text("Of course. We have an opening at nine tomorrow morning.")
    async with audio_call(live.ws_url, "+15555550200") as caller:
        setup = await caller.wait_for("setup", timeout=60)
        assert setup["config_source"] == "default"
        await caller.wait_for("agent_turn_end")
        await caller.wait_quiet()
        mark = len(caller.heard)
        caller.speak(load_frames("caller_book_appointment.wav"))
        await caller.wait_for("agent_turn_end", count=2, timeout=60)
        await caller.wait_audible(after=mark + 100)
        await caller.wait_quiet()
        ended = await caller.hangup()
    rows = ended["transcripts"]
    user = [r["content"] for r in rows if r["role"] == "user"]
    assert user and word_error_rate(SPOKEN, user[0]) < 0.2, rows
    assert [r["role"] for r in rows] == ["assistant", "user", "assistant"], rows
    assert ended["voice"] == "en-US-Standard-Journey-D"
    assert ended["voice_substituted"] is True
    assert ended["voice_used"] == "en_US-joe-medium"
    spoken = [pcm for _, pcm in caller.heard if level(pcm) > 300]
    assert len(spoken) > 50  # more than a second of the agent's voice reached the caller
    turn = ended["latency"]["turns"][-1]
    for part in (
        "end_of_speech_to_first_audio_ms",
        "endpointing_ms",
        "stt_ms",
        "llm_first_token_ms",
        "tts_first_audio_ms",
    ):
        assert turn[part] is not None, ended["latency"]
    assert ended["latency"]["p50"]["end_of_speech_to_first_audio_ms"] < 3000

    # the recording: caller on channel 0, agent on channel 1, behind a signed expiring URL
    url = (await live.json("GET", f"/v1/calls/{ended['call_id']}/audio"))["url"]
    assert ended["recording_url"] is not None
    response = await live.http.get(url, headers={"Authorization": ""})
    assert response.status_code == 200
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    caller_rms, agent_rms = (np.sqrt(np.mean(stereo[:, c].astype(float) ** 2)) for c in (0, 1))
    assert caller_rms > 100 and agent_rms > 100
    # the channels are kept apart: where the caller is loud, the agent channel is mostly quiet
    loud_caller = np.abs(stereo[:, 0]) > 3000
    loud_agent = np.abs(stereo[:, 1]) > 3000
    assert np.mean(loud_agent[loud_caller]) < 0.25 * max(np.mean(loud_agent), 1e-9) + 0.05
    tampered = await live.http.get(url.replace("sig=", "sig=0"), headers={"Authorization": ""})
    assert tampered.status_code == 403


async def test_barge_in_stops_the_agent_and_trims_the_transcript(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    long_reply = " ".join(
        f"Sentence number {n} tells you about our many services and opening hours."
        for n in range(1, 9)
    )
    agent = await live.add_agent(first_message="Hello.")
    await live.add_number("+15555550200", agent["id"])
    llm.reply_text(long_reply)
    llm.reply_text("Sure, tomorrow works.")
    speech = load_frames("caller_book_appointment.wav")
    async with audio_call(live.ws_url, "+15555550200") as caller:
        await caller.wait_for("setup", timeout=60)
        await caller.wait_for("agent_turn_end")
        await caller.wait_quiet()
        caller.speak(speech)
        await caller.wait_for("agent_turn_end", count=2, timeout=60)
        # wait until the long reply is audibly playing, then talk over it
        for _ in range(400):
            if sum(1 for _, pcm in caller.heard[-10:] if level(pcm) > 300) >= 5:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        interrupt_from = len(caller.sent_at)
        caller.speak(speech)
        await caller.wait_for("agent_turn_end", count=3, timeout=60)
        await asyncio.sleep(2)
        ended = await caller.hangup()
    onset = next(t for t, frame in caller.sent_at[interrupt_from:] if level(frame) > 300)
    assert caller.cleared_at, "the carrier never got a clear"
    # At the caller's playout clock (frames play as they arrive): the agent's voice stops for
    # good (400 ms of quiet) within 300 ms of the caller's first word.
    after = [(t, level(pcm)) for t, pcm in caller.heard if t >= onset]
    stopped = next(
        t for i, (t, _) in enumerate(after) if all(lv < 1000 for _, lv in after[i : i + 20])
    )
    stop_ms = (stopped - onset) * 1000
    assert stop_ms <= 300, f"agent audio stopped {stop_ms:.0f} ms after the caller began"
    rows = ended["transcripts"]
    assistant = [r["content"] for r in rows if r["role"] == "assistant"]
    interrupted = assistant[1]
    assert interrupted and len(interrupted) < len(long_reply), assistant
    assert long_reply.startswith(interrupted.split(" tells")[0])
    assert assistant[-1] == "Sure, tomorrow works."
    assert ended["end_reason"] == "caller_hangup"


async def test_background_track_levels(live: LiveServer, llm: ScriptedLLMServer) -> None:
    agent = await live.add_agent(
        first_message="Hello there, thanks for calling.", background_track="CALL_CENTER"
    )
    await live.add_number("+15555550200", agent["id"])
    async with audio_call(live.ws_url, "+15555550200") as caller:
        await caller.wait_audible()
        await asyncio.sleep(6)  # the greeting (about 2 s), then the ambience alone
        await caller.hangup()
    frames = [pcm for _, pcm in caller.heard]
    loud = [level(f) for f in frames if level(f) > 1500]
    last_word = max(i for i, f in enumerate(frames) if level(f) > 1500)
    quiet = frames[last_word + 50 :]  # from a second after the agent's last word
    assert len(quiet) >= 100
    gap = np.concatenate([np.frombuffer(f, dtype=np.int16) for f in quiet]).astype(np.float64)
    gap_dbfs = 20 * np.log10(np.sqrt(np.mean(gap**2)) / 32768)
    speech_dbfs = 20 * np.log10(np.median(loud) / 32768)
    assert -35 <= gap_dbfs <= -25, gap_dbfs
    assert speech_dbfs - gap_dbfs >= 15, (speech_dbfs, gap_dbfs)


# Long enough (about forty words) that one misheard word is under five points of WER.
GREETING = (
    "Thank you for calling Bright Smile Dental. We can book a cleaning for tomorrow morning "
    "or on Friday afternoon. Our office is open from eight in the morning until six in the "
    "evening. Please tell me your name and the day that suits you best."
)


async def _heard_greeting(live: LiveServer, number: str, track: str | None) -> list[bytes]:
    agent = await live.add_agent(first_message=GREETING, background_track=track)
    await live.add_number(number, agent["id"])
    async with audio_call(live.ws_url, number) as caller:
        await caller.wait_audible()
        # the whole greeting plays (about a third of a second a word), then a quiet stretch
        await asyncio.sleep(len(GREETING.split()) * 0.33 + 2.5)
        await caller.hangup()
    return [pcm for _, pcm in caller.heard]


async def test_background_keeps_the_agent_intelligible_and_null_is_silent(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    from phonebooth.providers.stt.faster_whisper import FasterWhisperSTT

    clean = await _heard_greeting(live, "+15555550201", None)
    noisy = await _heard_greeting(live, "+15555550202", "CALL_CENTER")
    # with no track, everything around the agent's words is digital silence
    assert clean[-40:] == [bytes(320)] * 40
    stt = FasterWhisperSTT()
    try:
        texts = [(await stt.recognize(b"".join(audio), 8000)).text for audio in (clean, noisy)]
    finally:
        await stt.aclose()
    clean_wer, noisy_wer = (word_error_rate(GREETING, text) for text in texts)
    assert clean_wer < 0.2, texts
    assert noisy_wer <= clean_wer + 0.05, texts


async def test_an_engine_that_knows_the_voice_is_used_as_is(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    from phonebooth.providers.tts.base import TTS, TTSCapabilities, VoiceInfo
    from phonebooth.voice.engines import VoiceEngines

    class ToneVoice(TTS):
        """A test engine that knows the ThunderPhone id and speaks a tone for each sentence."""

        name = "tone"
        capabilities = TTSCapabilities(streaming=True, sample_rate=8000)

        def voices(self) -> list[VoiceInfo]:
            return [VoiceInfo("en-US-Standard-Journey-D", "Journey", "en-US", "male", "tone")]

        async def _synthesize_impl(self, text: str, voice: str):  # type: ignore[no-untyped-def,override]
            t = np.arange(8000 * 0.5) / 8000
            yield (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes()

    built = await live.app.state.phonebooth.sessions.built()
    live.app.state.phonebooth.sessions._engines = VoiceEngines(built.stt, [ToneVoice(), *built.tts])
    agent = await live.add_agent(first_message="Hello.", voice="en-US-Standard-Journey-D")
    await live.add_number("+15555550200", agent["id"])
    async with audio_call(live.ws_url, "+15555550200") as caller:
        await caller.wait_for("setup", timeout=60)
        await caller.wait_audible()
        ended = await caller.hangup()
    assert ended["voice_used"] == "en-US-Standard-Journey-D"
    assert ended["voice_substituted"] is False


async def test_recordings_off_records_nothing(live: LiveServer, llm: ScriptedLLMServer) -> None:
    live.app.state.phonebooth.recordings.enabled = False
    agent = await live.add_agent(first_message="Hello.")
    await live.add_number("+15555550200", agent["id"])
    async with audio_call(live.ws_url, "+15555550200") as caller:
        await caller.wait_for("setup", timeout=60)
        await caller.wait_audible()
        ended = await caller.hangup()
    assert ended["recording_url"] is None
    missing = await live.http.get(f"/v1/calls/{ended['call_id']}/audio")
    assert missing.status_code == 404
