"""`phonebooth call`: flags, output and exit codes of contract section 8."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from phonebooth.calls.setup import CallService
from phonebooth.storage.db import Database
from phonebooth.storage.tables import Call, utcnow
from tests.conftest import ADMIN_KEY, LiveServer, free_port


async def run_cli(*args: str, key: str = ADMIN_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
    env["PHONEBOOTH_API_KEY"] = key
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "phonebooth", "call", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def number(live: LiveServer) -> dict[str, Any]:
    agent = await live.add_agent(prompt="fallback prompt")
    return await live.add_number("+15555550200", agent["id"])


async def test_json_prints_exactly_the_ended_call(live: LiveServer, number: dict[str, Any]) -> None:
    result = await run_cli(
        "--to",
        "+15555550200",
        "--from",
        "+14155550123",
        "--json",
        "--server",
        live.base,
        "--say",
        "Hello",
        "--turn-timeout",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    ended = json.loads(result.stdout)
    assert ended["from_number"] == "+14155550123"
    assert ended["end_reason"] == "caller_hangup"
    assert ended["config_source"] == "default"
    assert "transcripts" in ended
    assert "Connected: call" in result.stderr


async def test_refused_call_exits_2(live: LiveServer, number: dict[str, Any]) -> None:
    result = await run_cli("--to", "+15555559999", "--server", live.base, "--say", "hi")
    assert result.returncode == 2
    assert "unknown number" in result.stdout


async def test_bad_key_and_unreachable_server_exit_1(
    live: LiveServer, number: dict[str, Any]
) -> None:
    bad = await run_cli("--to", "+15555550200", "--server", live.base, key="sk_live_" + "Q" * 40)
    assert bad.returncode == 1
    assert "4401" in bad.stdout
    down = await run_cli("--to", "+15555550200", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "Cannot reach" in down.stdout


async def test_interactive_hangup(live: LiveServer, number: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
    env["PHONEBOOTH_API_KEY"] = ADMIN_KEY
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "phonebooth", "call", "--to", "+15555550200", "--server", live.base],
        env=env,
        input="/hangup\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Call ended: caller_hangup" in result.stdout


async def test_start_up_closes_calls_a_crash_left_open(sqlite_url: str) -> None:
    import httpx

    from phonebooth.calls.registry import LiveCalls

    db = Database(sqlite_url)
    await db.upgrade()
    from phonebooth.storage.orgs import create_organization

    async with db.session() as session:
        org = await create_organization(session, "x")
        session.add(
            Call(
                id=42,
                org_id=org.id,
                direction="inbound",
                from_number="+1",
                to_number="+2",
                status="in_progress",
                start_time=utcnow(),
            )
        )
        await session.commit()
    async with httpx.AsyncClient() as client:
        service = CallService(db=db, client=client, registry=LiveCalls(1), incoming_timeout=2)
        assert await service.sweep_interrupted() == [42]
        assert await service.sweep_interrupted() == []
    async with db.session() as session:
        call = await session.get(Call, 42)
        assert call is not None
        assert (call.status, call.end_reason) == ("failed", "error")
        assert call.end_time is not None
    await db.dispose()
