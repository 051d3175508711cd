"""Cloud speech-to-text over OpenAI's `POST /v1/audio/transcriptions` (or a compatible server).

Plain httpx against the documented wire format, so no SDK is needed: a multipart form with
the audio as a WAV `file`, the `model`, `response_format=json` and an optional ISO 639-1
`language`; the answer is `{"text": "..."}`. The same request works with servers that copy
the API (Groq, a self-hosted faster-whisper server) through `base_url`.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import httpx

from phonebooth.providers.http_errors import service_error_detail
from phonebooth.providers.llm.base import status_is_retryable
from phonebooth.providers.stt.base import STT, STTCapabilities, STTError, language_code

__all__ = ["OPENAI_STT_BASE_URL", "OpenAISTT", "pcm16_to_wav"]

OPENAI_STT_BASE_URL = "https://api.openai.com/v1"


def pcm16_to_wav(pcm16: bytes, sample_rate: int) -> bytes:
    """16-bit mono PCM in a WAV container: the header tells the service the rate."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16)
    return buffer.getvalue()


class OpenAISTT(STT):
    """Whole-utterance transcription over HTTP; audio is sent at the rate it arrives."""

    name = "openai_stt"
    capabilities = STTCapabilities(streaming=False, sample_rate=16_000)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = OPENAI_STT_BASE_URL,
        model: str = "whisper-1",
        timeout: float = 15.0,
        client: httpx.AsyncClient | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._url = base_url.rstrip("/") + "/audio/transcriptions"
        self._model = model
        # A key-less server (self-hosted) gets no Authorization header at all.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def _recognize_impl(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        data = {"model": self._model, "response_format": "json"}
        iso = language_code(language)
        if iso:
            data["language"] = iso
        files = {"file": ("audio.wav", pcm16_to_wav(pcm16, sample_rate), "audio/wav")}
        try:
            response = await self._client.post(
                self._url, data=data, files=files, headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise STTError(f"{self.name}: timed out", retryable=True) from exc
        except httpx.TransportError as exc:
            raise STTError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise STTError(
                f"{self.name}: HTTP {response.status_code}: {service_error_detail(response)}",
                retryable=status_is_retryable(response.status_code),
                status_code=response.status_code,
            )
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise STTError(f"{self.name}: answer without a text field", retryable=False) from exc
        if not isinstance(text, str):
            raise STTError(f"{self.name}: answer text is not a string", retryable=False)
        return text

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
        await super().aclose()
