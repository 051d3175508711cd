"""Shared fixtures: real SQLite always, real PostgreSQL when reachable (required in CI)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from phonebooth.api.app import create_app
from phonebooth.config import Settings

ADMIN_KEY = "sk_live_" + "A1" * 20
POSTGRES_ADMIN_URL = os.environ.get(
    "PHONEBOOTH_TEST_POSTGRES_DSN", "postgresql://phonebooth:phonebooth@127.0.0.1:5432/postgres"
)


def peers_required() -> bool:
    return os.environ.get("PHONEBOOTH_REQUIRE_PEERS") == "1"


def skip_or_fail(reason: str) -> None:
    """A missing system peer skips locally (with the reason) and fails under CI."""
    if peers_required():
        pytest.fail(f"PHONEBOOTH_REQUIRE_PEERS=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _postgres_database() -> tuple[str, str]:
    """Create an empty database; return (asyncpg DSN, SQLAlchemy URL)."""
    name = "pb_test_" + secrets.token_hex(6)
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        skip_or_fail(f"no PostgreSQL server at {POSTGRES_ADMIN_URL} ({exc.__class__.__name__})")
        raise
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    return name, dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _drop_postgres_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind; every test using it runs on both."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    name, url = await _postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


def make_settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "api_key": ADMIN_KEY,
        # Tests choose their model explicitly (a scripted server, or none): what this machine
        # has installed or exports (OPENAI_API_KEY) must not change their outcome.
        "llm_provider": "none",
    }
    values.update(extra)
    if "llm_base_url" in extra and "llm_provider" not in extra:
        values["llm_provider"] = "openai"
    return Settings(**values)


class Api:
    """An httpx client on the app (in process) with helpers for other keys."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.key = key

    def as_key(self, key: str) -> Api:
        return Api(self.client, key)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)


@pytest.fixture
async def app_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def api(app_settings: Settings) -> AsyncIterator[Api]:
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, ADMIN_KEY)


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PHONEBOOTH_") and name not in {
            "PHONEBOOTH_REQUIRE_PEERS",
            "PHONEBOOTH_TEST_POSTGRES_DSN",
        }:
            monkeypatch.delenv(name)
    yield


class LiveServer:
    """phonebooth served by uvicorn on 127.0.0.1 (its own thread and event loop)."""

    def __init__(self, base: str, settings: Settings, app: Any) -> None:
        self.base = base
        self.ws_url = "ws" + base.removeprefix("http") + "/v1/sim/call"
        self.settings = settings
        self.app = app
        self.http = httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.http.request(method, path, json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    async def add_agent(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "Default", "prompt": "You are the default agent.", "voice": "v"}
        body.update(fields)
        result: dict[str, Any] = await self.json("POST", "/v1/agents", body, 201)
        return result

    async def add_number(self, number: str, agent_id: int | None = None) -> dict[str, Any]:
        body = {"number": number, "inbound_agent_id": agent_id}
        result: dict[str, Any] = await self.json("POST", "/v1/phone-numbers", body, 201)
        return result

    async def set_webhook(self, url: str | None) -> dict[str, Any]:
        result: dict[str, Any] = await self.json("PUT", "/v1/webhook", {"url": url})
        return result

    async def deliveries(
        self, call_id: int, count: int, timeout: float = 10, *, incoming_only: bool = True
    ) -> list[Any]:
        """The call's delivery records (its `*.incoming` ones by default), once `count` exist."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            page = await self.json("GET", f"/v1/developer/webhook-deliveries?call_id={call_id}")
            rows = [
                row
                for row in page["results"]
                if not incoming_only or row["event_type"].endswith(".incoming")
            ]
            if len(rows) >= count:
                return rows
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {len(rows)} deliveries for call {call_id}")
            await asyncio.sleep(0.05)


@pytest.fixture
def server_options() -> dict[str, Any]:
    """Override in a test module to change the live server's settings."""
    return {}


@pytest.fixture
def llm() -> Iterator[Any]:
    """A scripted OpenAI-compatible model on 127.0.0.1; every live server talks to one."""
    from tests.llm_server import ScriptedLLMServer

    with ScriptedLLMServer(default_text="Okay.") as server:
        yield server


@pytest.fixture
async def live(
    tmp_path: Path, sqlite_url: str, server_options: dict[str, Any], llm: Any
) -> AsyncIterator[LiveServer]:
    from tests.servers import serve_in_thread

    port = free_port()
    options = {"port": port, "llm_base_url": llm.base_url, **server_options}
    for tier in ("spark", "bolt", "zap"):
        options.setdefault(f"model_{tier}", "scripted")
    database = options.pop("database_url", sqlite_url)
    settings = make_settings(tmp_path, database, **options)
    app = create_app(settings)
    with serve_in_thread(app, port):
        server = LiveServer(f"http://127.0.0.1:{port}", settings, app)
        try:
            yield server
        finally:
            await server.http.aclose()


@pytest.fixture
def receiver() -> Iterator[Any]:
    from tests.servers import ScriptedReceiver, serve_in_thread

    scripted = ScriptedReceiver()
    with serve_in_thread(scripted.app, scripted.port):
        yield scripted
