"""`phonebooth serve` as a real process, and the CLI against it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def _env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBOOTH_")}
    env.update(PHONEBOOTH_DATA_DIR=str(data_dir), PHONEBOOTH_PORT=str(port), **extra)
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    port = free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "phonebooth", "serve"],
        env=_env(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(base + "/v1/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        pytest.fail("serve did not answer within 60 s")
    try:
        yield base, data_dir, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def cli(base: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(data_dir, 0, PHONEBOOTH_SERVER=base)
    return subprocess.run(
        [sys.executable, "-m", "phonebooth", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_creates_a_private_admin_key_and_answers_health(
    server: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, data_dir, process = server
    assert httpx.get(base + "/v1/healthz").json() == {"ok": True}
    key_file = data_dir / "admin-key"
    key = key_file.read_text().strip()
    assert key.startswith("sk_live_")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert httpx.get(base + "/v1/agents", headers={"Authorization": f"Bearer {key}"}).json() == []
    process.terminate()
    output = process.communicate(timeout=10)[0]
    assert str(key_file) in output
    assert key not in output  # stdout is not a terminal: only the path is printed


def test_cli_round_trip(server: tuple[str, Path, subprocess.Popen[str]], tmp_path: Path) -> None:
    base, data_dir, _ = server
    created = cli(
        base,
        data_dir,
        "agents",
        "create",
        "--name",
        "Desk",
        "--prompt",
        "Be kind.",
        "--first-message",
        "Hi!",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    agent = json.loads(created.stdout)
    assert agent["first_message"] == "Hi!"

    added = cli(base, data_dir, "numbers", "add", "+15555550100", "--json")
    assert added.returncode == 0, added.stderr
    assigned = cli(base, data_dir, "numbers", "assign", "+15555550100", "--agent", str(agent["id"]))
    assert assigned.returncode == 0, assigned.stderr
    assert f"agent {agent['id']}" in assigned.stdout
    listed = cli(base, data_dir, "numbers", "list")
    assert "+15555550100" in listed.stdout

    hook = cli(base, data_dir, "webhook", "set", "https://hooks.example.com/in", "--json")
    assert json.loads(hook.stdout)["secret"].startswith("whsec_")
    shown = cli(base, data_dir, "webhook", "show")
    assert "https://hooks.example.com/in" in shown.stdout

    key = json.loads(cli(base, data_dir, "keys", "create", "--name", "ci", "--json").stdout)
    assert key["role"] == "member"
    keys = cli(base, data_dir, "keys", "list")
    assert key["key_prefix"] in keys.stdout
    revoked = cli(base, data_dir, "keys", "revoke", key["id"])
    assert revoked.returncode == 0

    bad = cli(
        base, data_dir, "agents", "create", "--name", "x", "--prompt", "y", "--product", "fast"
    )
    assert bad.returncode == 1
    assert "product" in bad.stderr and "fast" in bad.stderr

    tools = tmp_path / "tools.json"
    tools.write_text("[not json")
    broken = cli(
        base, data_dir, "agents", "create", "--name", "x", "--prompt", "y", "--tools", str(tools)
    )
    assert broken.returncode == 1
    assert "not valid JSON" in broken.stderr


def test_cli_reports_unreachable_server(tmp_path: Path) -> None:
    result = cli(
        f"http://127.0.0.1:{free_port()}",
        tmp_path,
        "agents",
        "list",
        "--api-key",
        "sk_live_" + "x" * 32,
    )
    assert result.returncode == 1
    assert "Cannot reach phonebooth" in result.stderr


def test_bad_configured_key_stops_start_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "phonebooth", "serve"],
        env=_env(tmp_path, free_port(), PHONEBOOTH_API_KEY="sk_live_short"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PHONEBOOTH_API_KEY" in result.stderr
    assert "at least 32 letters and digits" in result.stderr
    assert "sk_live_short" not in result.stderr


def test_orgs_create_prints_a_working_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "phonebooth", "orgs", "create", "Acme", "--json"],
        env=_env(tmp_path, 0),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["name"] == "Acme"
    assert payload["api_key"].startswith("sk_live_")
