"""Cloud text-to-speech over Google Cloud's REST API (`v1/text:synthesize`), with plain httpx.

Google is the cloud engine of choice because ThunderPhone voice ids are Google voice names.
The wire format, as documented: `POST /v1/text:synthesize` with
`{"input": {"text"}, "voice": {"languageCode", "name"}, "audioConfig": {"audioEncoding":
"LINEAR16", "sampleRateHertz"}}` answers `{"audioContent": <base64>}`, and LINEAR16 content
carries a WAV header, stripped here. `GET /v1/voices` lists `{"voices": [{"languageCodes",
"name", "ssmlGender", "naturalSampleRateHertz"}]}`. Auth is an API key (`X-Goog-Api-Key`) or
an OAuth access token (`Authorization: Bearer`).

No SDK is needed, so this engine is no extra: httpx is a core dependency.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import wave
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from phonebooth.providers.http_errors import service_error_detail
from phonebooth.providers.llm.base import status_is_retryable
from phonebooth.providers.tts.base import (
    TTS,
    Gender,
    TTSCapabilities,
    TTSError,
    TTSUnavailable,
    VoiceInfo,
)

__all__ = [
    "GOOGLE_TTS_BASE_URL",
    "THUNDERPHONE_VOICE_ALIASES",
    "GoogleTTS",
    "google_voice_name",
    "strip_wav_header",
]

GOOGLE_TTS_BASE_URL = "https://texttospeech.googleapis.com"
# ThunderPhone ids that are not literally Google names, and the Google voice each one means.
# `en-US-Standard-Journey-X` is ThunderPhone's spelling of Google's Journey voices.
THUNDERPHONE_VOICE_ALIASES: Mapping[str, str] = {
    "en-US-Standard-Journey-D": "en-US-Journey-D",
    "en-US-Standard-Journey-F": "en-US-Journey-F",
    "en-US-Standard-Journey-O": "en-US-Journey-O",
}
_ALIAS_GENDERS: Mapping[str, Gender] = {
    "en-US-Standard-Journey-D": "male",
    "en-US-Standard-Journey-F": "female",
    "en-US-Standard-Journey-O": "female",
}
# Shape of a Google voice name: language-REGION-Family[-Variant] (en-US-Neural2-F,
# en-US-Chirp3-HD-Charon, cmn-CN-Wavenet-A). Before the voice list is fetched, an id of this
# shape counts as known so that a configured Google engine is tried rather than substituted.
_GOOGLE_NAME = re.compile(
    r"^[a-z]{2,3}-[A-Z]{2}-(Standard|Wavenet|Neural2|News|Studio|Polyglot|Journey|Casual|"
    r"Chirp-HD|Chirp3-HD)-[A-Za-z0-9]+$"
)
_GENDERS: Mapping[str, Gender] = {"MALE": "male", "FEMALE": "female", "NEUTRAL": "neutral"}


def google_voice_name(
    voice_id: str, aliases: Mapping[str, str] = THUNDERPHONE_VOICE_ALIASES
) -> str:
    """The Google voice name behind a ThunderPhone id (most ids are Google names already)."""
    return aliases.get(voice_id, voice_id)


def _language_of(name: str) -> str:
    return "-".join(name.split("-")[:2])


def strip_wav_header(audio: bytes) -> bytes:
    """The PCM frames of a WAV file; audio without a RIFF header is returned as it is."""
    if not audio.startswith(b"RIFF"):
        return audio
    try:
        with wave.open(io.BytesIO(audio), "rb") as wav:
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TTSError(f"google: malformed WAV in the answer: {exc}", retryable=False) from exc


class GoogleTTS(TTS):
    """One request per text; the whole sentence arrives at once (`streaming=False`).

    Ask for the rate the call needs (`sample_rate=8000` for a phone line) and Google resamples
    on its side. Call `warm()` to fetch the voice list so the catalog can offer it.
    """

    name = "google"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        base_url: str = GOOGLE_TTS_BASE_URL,
        sample_rate: int = 24_000,
        aliases: Mapping[str, str] = THUNDERPHONE_VOICE_ALIASES,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if api_key:
            self._headers = {"X-Goog-Api-Key": api_key}
        elif access_token:
            self._headers = {"Authorization": f"Bearer {access_token}"}
        else:
            raise TTSUnavailable("the google provider needs an API key or an access token")
        self._base = base_url.rstrip("/")
        self._aliases = dict(aliases)
        self._listed: list[VoiceInfo] | None = None
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.capabilities = TTSCapabilities(streaming=False, sample_rate=sample_rate)

    def _alias_voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(
                alias, f"{name} (google)", _language_of(name), _ALIAS_GENDERS.get(alias), self.name
            )
            for alias, name in self._aliases.items()
        ]

    def voices(self) -> list[VoiceInfo]:
        """The fetched voice list (after `warm()`), plus the ThunderPhone aliases."""
        return self._alias_voices() + (self._listed or [])

    def knows(self, voice_id: str) -> bool:
        if voice_id in self._aliases:
            return True
        if self._listed is not None:
            return any(voice.id == voice_id for voice in self._listed)
        return _GOOGLE_NAME.match(voice_id) is not None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(
                method, self._base + path, headers=self._headers, **kwargs
            )
        except httpx.TimeoutException as exc:
            raise TTSError(f"{self.name}: timed out", retryable=True) from exc
        except httpx.TransportError as exc:
            raise TTSError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise TTSError(
                f"{self.name}: HTTP {response.status_code}: {service_error_detail(response)}",
                retryable=status_is_retryable(response.status_code),
                status_code=response.status_code,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise TTSError(f"{self.name}: the answer is not JSON", retryable=False) from exc

    async def refresh_voices(self, language_code: str | None = None) -> list[VoiceInfo]:
        """Fetch Google's voice list (optionally one language's) for `voices()`."""
        params = {"languageCode": language_code} if language_code else None
        body = await self._request("GET", "/v1/voices", params=params)
        listed: list[VoiceInfo] = []
        for entry in body.get("voices", []) if isinstance(body, dict) else []:
            name = entry.get("name")
            if not isinstance(name, str):
                continue
            codes = entry.get("languageCodes") or [_language_of(name)]
            gender = _GENDERS.get(str(entry.get("ssmlGender", "")))
            listed.append(VoiceInfo(name, f"{name} (google)", str(codes[0]), gender, self.name))
        self._listed = listed
        return listed

    async def warm(self) -> None:
        await self.refresh_voices()

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        name = google_voice_name(voice, self._aliases)
        body = await self._request(
            "POST",
            "/v1/text:synthesize",
            json={
                "input": {"text": text},
                "voice": {"languageCode": _language_of(name), "name": name},
                "audioConfig": {
                    "audioEncoding": "LINEAR16",
                    "sampleRateHertz": self.capabilities.sample_rate,
                },
            },
        )
        content = body.get("audioContent") if isinstance(body, dict) else None
        if not isinstance(content, str):
            raise TTSError(f"{self.name}: answer without audioContent", retryable=False)
        try:
            audio = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TTSError(f"{self.name}: audioContent is not base64", retryable=False) from exc
        yield strip_wav_header(audio)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
        await super().aclose()
