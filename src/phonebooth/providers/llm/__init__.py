"""LLM engines behind one interface (`LLM.chat()`), plus the start-up choice of engine.

Importing this package imports no SDK: `openai` and `llama_cpp` load when a provider is built.
"""

from phonebooth.providers.llm.base import (
    LLM,
    ChatEvent,
    Finished,
    LLMCapabilities,
    LLMError,
    LLMUnavailable,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
)
from phonebooth.providers.llm.fallback import FallbackLLM
from phonebooth.providers.llm.select import LLMChoice, choose_llm, tier_model, tier_silence_ms

__all__ = [
    "LLM",
    "ChatEvent",
    "FallbackLLM",
    "Finished",
    "LLMCapabilities",
    "LLMChoice",
    "LLMError",
    "LLMUnavailable",
    "Message",
    "TextDelta",
    "ToolCallRequest",
    "ToolSpec",
    "choose_llm",
    "tier_model",
    "tier_silence_ms",
]
