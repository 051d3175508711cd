"""A local GGUF model run in-process by llama-cpp-python (the `llama` extra).

One `Llama` instance is not thread-safe, so every load and generation runs on one worker
thread of its own; tokens cross back to the event loop through an asyncio queue, and closing
the chat stream (a barge-in) tells the worker to stop at the next token.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Protocol, cast

from phonebooth.providers.llm.base import (
    LLM,
    ImplEvent,
    LLMCapabilities,
    LLMError,
    LLMUnavailable,
    Message,
    TextDelta,
    ToolSpec,
)
from phonebooth.providers.llm.local_model import LocalModel, download_hub_model, locate_model

__all__ = ["LlamaCppLLM", "import_llama_cpp", "to_plain_messages"]

_CHARS_PER_TOKEN = 3  # a cautious estimate, so trimmed history fits the context window


class _Llama(Protocol):
    def create_chat_completion(
        self, *, messages: list[dict[str, str]], stream: bool, max_tokens: int
    ) -> Iterator[dict[str, Any]]: ...


def import_llama_cpp() -> ModuleType:
    """The `llama_cpp` module, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise LLMUnavailable(
            "the llama_cpp provider needs llama-cpp-python: pip install 'phonebooth[llama]'"
        ) from exc


def to_plain_messages(messages: Sequence[Message], budget_chars: int) -> list[dict[str, str]]:
    """Role/content pairs for a model without tools, oldest turns dropped to fit the budget.

    Tool results become user turns so the model still hears what a tool said.
    """
    plain: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            plain.append({"role": "user", "content": f"Tool result: {message.content or ''}"})
        elif message.content:
            plain.append({"role": message.role, "content": message.content})
    system = [m for m in plain if m["role"] == "system"][:1]
    rest = [m for m in plain if m["role"] != "system"]
    used = sum(len(m["content"]) for m in system + rest)
    while len(rest) > 1 and used > budget_chars:
        used -= len(rest.pop(0)["content"])
    return system + rest


class LlamaCppLLM(LLM):
    """Streams text from a local GGUF model; it cannot call tools, so tools are ignored.

    The `model` argument of `chat()` is ignored too: there is one local model.
    """

    name = "llama_cpp"
    capabilities = LLMCapabilities(streaming=True, tool_calls=False)

    def __init__(
        self,
        model_path: str | None = None,
        *,
        hub_model: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        max_tokens: int = 200,
    ) -> None:
        super().__init__()
        self._module = import_llama_cpp()
        self.model: LocalModel = locate_model(model_path, hub_model)
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._max_tokens = max_tokens
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phonebooth-llama")
        self._llama: _Llama | None = None  # touched only on the worker thread

    def _load(self) -> _Llama:
        """Runs on the worker thread: download if needed, then load the model once."""
        if self._llama is None:
            path = self.model.path
            if path is None:
                assert self.model.hub is not None
                path = download_hub_model(self.model.hub)
            llama = self._module.Llama(
                model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, verbose=False
            )
            self._llama = cast(_Llama, llama)
        return self._llama

    async def warm(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        except LLMError:
            raise
        except Exception as exc:
            raise LLMUnavailable(f"{self.name}: cannot load {self.model.label}: {exc}") from exc

    async def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        budget = max(256, (self._n_ctx - self._max_tokens) * _CHARS_PER_TOKEN)
        plain = to_plain_messages(messages, budget)

        def put(item: str | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while we generated: nobody is listening
                stop.set()

        def generate() -> None:
            try:
                chunks = self._load().create_chat_completion(
                    messages=plain, stream=True, max_tokens=self._max_tokens
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0].get("delta", {}).get("content")
                    if text:
                        put(text)
            except BaseException as exc:  # handed to the event loop, raised there
                put(exc)
            finally:
                put(None)

        loop.run_in_executor(self._executor, generate)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, LLMError):
                    raise item
                if isinstance(item, BaseException):
                    raise LLMError(
                        f"{self.name}: {type(item).__name__}: {item}", retryable=False
                    ) from item
                yield TextDelta(item)
        finally:
            stop.set()

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
