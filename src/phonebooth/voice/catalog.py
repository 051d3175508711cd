"""The voice catalog: every voice the installed TTS engines offer, and how a requested id
becomes the voice a call actually uses (architecture notes, section 8).

Agents carry ThunderPhone voice ids (`en-US-Standard-Journey-D`, `en-US-James1`) that an
offline installation may not have. Resolution never fails a call:

1. an engine that knows the exact id speaks it (case is ignored for listed voices);
2. else an installed voice of the id's language: the leading BCP 47 tag (`en-US`; piper's
   `en_US` spelling counts as the same), then the bare language (`en`), preferring the
   gender the id implies when `gender_of` can tell;
3. else the installation's default voice.

Each substitution is logged once per requested id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phonebooth.providers.tts.base import TTS, Gender, VoiceInfo

__all__ = [
    "GOOGLE_EN_US_VARIANT_GENDERS",
    "JOURNEY_VARIANT_GENDERS",
    "VOICE_NAME_GENDERS",
    "VoiceCatalog",
    "VoiceChoice",
    "gender_of",
    "language_of",
]

_log = logging.getLogger("phonebooth.voice")

# The leading language tag of an id: `en`, `en-US`, `en_US`, `es-419`; the tag must end the id
# or be followed by `-`/`_`, so `espeak-en-us` and `alloy` carry no language.
_LANGUAGE = re.compile(r"^(?P<lang>[A-Za-z]{2,3})(?:[-_](?P<region>[A-Za-z]{2}|\d{3}))?(?=$|[-_])")
# Google voice names: language-REGION-Family-Variant (`en-US-Neural2-F`,
# `en-US-Chirp3-HD-Charon`), also ThunderPhone's `en-US-Standard-Journey-D`.
_GOOGLE = re.compile(
    r"^[a-z]{2,3}-[A-Z]{2}-(?:Standard-)?(?P<family>Standard|Wavenet|Neural2|Journey|"
    r"Chirp-HD|Chirp3-HD|Studio|News|Polyglot|Casual)-(?P<variant>[A-Za-z0-9]+)$"
)
_TOKENS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")

# Google's Journey (now Chirp HD) voices: D is male, F and O are female, in every language.
JOURNEY_VARIANT_GENDERS: Mapping[str, Gender] = {"D": "male", "F": "female", "O": "female"}
# Google's en-US Standard, WaveNet and Neural2 letters, as its voice list reports them.
GOOGLE_EN_US_VARIANT_GENDERS: Mapping[str, Gender] = {
    "A": "male",
    "B": "male",
    "C": "female",
    "D": "male",
    "E": "female",
    "F": "female",
    "G": "female",
    "H": "female",
    "I": "male",
    "J": "male",
}
# Voice ids that are (or contain) a person's name: ThunderPhone's `en-US-James1`, Azure's
# `en-US-JennyNeural`, Google's Chirp 3 HD speakers, OpenAI's and Polly's voices, piper's.
_MALE_NAMES = (
    "james",
    "john",
    "joe",
    "michael",
    "david",
    "ryan",
    "guy",
    "davis",
    "tony",
    "jason",
    "brian",
    "eric",
    "andrew",
    "christopher",
    "roger",
    "steffan",
    "matthew",
    "justin",
    "joey",
    "kevin",
    "adam",
    "daniel",
    "george",
    "thomas",
    "william",
    "paul",
    "mark",
    "peter",
    "arthur",
    "liam",
    "noah",
    "echo",
    "onyx",
    "puck",
    "charon",
    "fenrir",
    "orus",
)
_FEMALE_NAMES = (
    "jenny",
    "aria",
    "sara",
    "sarah",
    "emma",
    "olivia",
    "amy",
    "joanna",
    "salli",
    "kimberly",
    "ivy",
    "kendra",
    "jane",
    "nancy",
    "michelle",
    "ava",
    "lily",
    "mary",
    "anna",
    "emily",
    "sophia",
    "rachel",
    "jessica",
    "lessac",
    "kristin",
    "kathleen",
    "nova",
    "shimmer",
    "aoede",
    "kore",
    "leda",
    "zephyr",
)
VOICE_NAME_GENDERS: Mapping[str, Gender] = {
    **dict.fromkeys(_MALE_NAMES, "male"),
    **dict.fromkeys(_FEMALE_NAMES, "female"),
    "male": "male",
    "man": "male",
    "female": "female",
    "woman": "female",
}


def language_of(voice_id: str) -> str | None:
    """The BCP 47 tag an id starts with (`en-US`, `en`), normalized; None when there is none."""
    match = _LANGUAGE.match(voice_id.strip())
    if match is None:
        return None
    lang = match["lang"].lower()
    region = match["region"]
    return f"{lang}-{region.upper()}" if region else lang


def gender_of(voice_id: str) -> Gender | None:
    """The gender an id implies, from Google's naming or a name in the id; None if unknown."""
    google = _GOOGLE.match(voice_id.strip())
    if google is not None:
        family, variant = google["family"], google["variant"]
        if family in ("Journey", "Chirp-HD"):
            return JOURNEY_VARIANT_GENDERS.get(variant)
        if family == "Chirp3-HD":
            return VOICE_NAME_GENDERS.get(variant.lower())
        if voice_id.startswith("en-US-") and family in ("Standard", "Wavenet", "Neural2"):
            return GOOGLE_EN_US_VARIANT_GENDERS.get(variant)
        return None
    for token in _TOKENS.findall(voice_id):
        gender = VOICE_NAME_GENDERS.get(token.lower())
        if gender is not None:
            return gender
    return None


def _normalized(language: str) -> str:
    return language.replace("_", "-").lower()


@dataclass(frozen=True)
class VoiceChoice:
    """What a call records: the `requested` id, the voice `used`, its `engine`, and whether
    that was a substitution. `used` and `engine` are None only when no TTS engine exists."""

    requested: str
    used: str | None
    engine: str | None
    substituted: bool
    reason: str = ""


class VoiceCatalog:
    """The voices of the configured engines, in engine order (the first engine is preferred).

    Build it after the engines' `warm()` (a cloud engine lists its voices then), or call
    `refresh()` afterwards.
    """

    def __init__(self, engines: Sequence[TTS], *, default_voice: str | None = None) -> None:
        self._engines = list(engines)
        self._wanted_default = default_voice
        self._logged: set[str] = set()
        self._voices: list[VoiceInfo] = []
        self._default: VoiceInfo | None = None
        self.refresh()

    def refresh(self) -> None:
        """Read every engine's voice list again; an engine that fails to list is skipped."""
        voices: list[VoiceInfo] = []
        seen: set[tuple[str, str]] = set()
        for engine in self._engines:
            try:
                listed = engine.voices()
            except Exception:
                _log.exception("TTS engine %s could not list its voices", engine.name)
                continue
            for voice in listed:
                if (voice.engine, voice.id) not in seen:
                    seen.add((voice.engine, voice.id))
                    voices.append(voice)
        self._voices = voices
        self._default = self._pick_default(voices)

    def _pick_default(self, voices: list[VoiceInfo]) -> VoiceInfo | None:
        if self._wanted_default:
            for voice in voices:
                if voice.id == self._wanted_default:
                    return voice
            _log.warning(
                "default voice %s is not installed; using the first voice instead",
                self._wanted_default,
            )
        return voices[0] if voices else None

    @property
    def default(self) -> VoiceInfo | None:
        return self._default

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices)

    def engine(self, name: str) -> TTS | None:
        """The engine called `name` (as a `VoiceChoice.engine` names it)."""
        return next((engine for engine in self._engines if engine.name == name), None)

    def resolve(self, requested: str | None) -> VoiceChoice:
        """The voice to speak with for `requested`; never raises (see the module's docstring)."""
        wanted = (requested or "").strip()
        try:
            choice = self._resolve(wanted)
        except Exception:  # a misbehaving engine must not fail a call over its voice
            _log.exception("voice resolution failed for %r; using the default voice", wanted)
            choice = self._fallback(wanted, "default (resolution failed)")
        if choice.substituted and wanted not in self._logged:
            self._logged.add(wanted)
            _log.info(
                "voice %r is not installed: using %s (%s, %s)",
                wanted,
                choice.used,
                choice.engine,
                choice.reason,
            )
        return choice

    def _resolve(self, wanted: str) -> VoiceChoice:
        if not wanted:
            return self._fallback(wanted, "default (none requested)", substituted=False)
        for engine in self._engines:
            if engine.knows(wanted):
                return VoiceChoice(wanted, wanted, engine.name, False, "exact")
        lowered = wanted.lower()
        for voice in self._voices:
            if voice.id.lower() == lowered:
                return VoiceChoice(wanted, voice.id, voice.engine, False, "exact")
        language = language_of(wanted)
        if language is not None:
            gender = gender_of(wanted)
            bare = language.split("-", 1)[0]
            tiers = [language] if "-" in language else []
            tiers.append(bare)
            for tier in tiers:
                matches = [v for v in self._voices if self._speaks(v, tier)]
                if matches:
                    voice = self._prefer(matches, gender)
                    return VoiceChoice(wanted, voice.id, voice.engine, True, f"language {tier}")
        return self._fallback(wanted, "default")

    @staticmethod
    def _speaks(voice: VoiceInfo, tag: str) -> bool:
        language = _normalized(voice.language)
        tag = tag.lower()
        return language == tag if "-" in tag else language.split("-", 1)[0] == tag

    def _prefer(self, matches: list[VoiceInfo], gender: Gender | None) -> VoiceInfo:
        """The implied gender first, then the default voice, then engine order."""

        def rank(item: tuple[int, VoiceInfo]) -> tuple[bool, bool, int]:
            index, voice = item
            return (gender is not None and voice.gender != gender, voice != self._default, index)

        return min(enumerate(matches), key=rank)[1]

    def _fallback(self, wanted: str, reason: str, *, substituted: bool = True) -> VoiceChoice:
        if self._default is None:
            return VoiceChoice(wanted, None, None, bool(wanted), "no TTS engine")
        return VoiceChoice(wanted, self._default.id, self._default.engine, substituted, reason)

    def as_api(self) -> dict[str, Any]:
        """The `GET /v1/voices` answer: every voice, and the languages they cover."""
        return {
            "voices": [voice.as_dict() for voice in self._voices],
            "languages": sorted({voice.language for voice in self._voices}),
        }
