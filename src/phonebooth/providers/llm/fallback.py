"""Several engines behind the one LLM interface, so the pipeline never knows about fallbacks."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence

from phonebooth.providers.llm.base import (
    LLM,
    Finished,
    ImplEvent,
    LLMCapabilities,
    LLMError,
    Message,
    ToolSpec,
)

__all__ = ["FallbackLLM"]

logger = logging.getLogger("phonebooth.providers.llm")


class FallbackLLM(LLM):
    """Tries each engine in order; moves on only after a retryable failure before any text.

    Once text has reached the caller a failure is raised as it is: restarting a half-spoken
    sentence from another model would be worse than the error. `models` optionally names the
    model to ask each engine for (None: the model the caller asked for).
    """

    name = "fallback"

    def __init__(self, llms: Sequence[LLM], *, models: Sequence[str | None] | None = None) -> None:
        super().__init__()
        if not llms:
            raise ValueError("FallbackLLM needs at least one LLM")
        if models is not None and len(models) != len(llms):
            raise ValueError("models must name one model (or None) per LLM")
        self.llms = tuple(llms)
        self.models: tuple[str | None, ...] = tuple(models or [None] * len(llms))
        self.name = "fallback(" + ", ".join(llm.name for llm in self.llms) + ")"
        # Tools are offered when any engine can use them; those that cannot just talk.
        self.capabilities = LLMCapabilities(
            streaming=all(llm.capabilities.streaming for llm in self.llms),
            tool_calls=any(llm.capabilities.tool_calls for llm in self.llms),
        )

    async def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        last = len(self.llms) - 1
        for position, (llm, override) in enumerate(zip(self.llms, self.models, strict=True)):
            produced = False
            stream = llm.chat(model=override or model, messages=messages, tools=tools)
            try:
                async for event in stream:
                    if isinstance(event, Finished):
                        for call in event.tool_calls:
                            yield call
                        return
                    produced = True
                    yield event
            except LLMError as exc:
                if produced or not exc.retryable or position == last:
                    raise
                logger.warning(
                    "%s failed (%s); trying %s", llm.name, exc, self.llms[position + 1].name
                )
            finally:
                await stream.aclose()

    async def warm(self) -> None:
        for llm in self.llms:
            await llm.warm()

    async def aclose(self) -> None:
        for llm in self.llms:
            await llm.aclose()
