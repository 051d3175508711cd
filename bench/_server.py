"""Start a throwaway `phonebooth serve` for a benchmark when no --server is given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

BENCH_KEY = "sk_live_" + "B3" * 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(database_url: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (base URL, admin key) of a fresh server in a temporary data dir."""
    with tempfile.TemporaryDirectory() as data_dir:
        port = _free_port()
        env = {
            **os.environ,
            "PHONEBOOTH_DATA_DIR": data_dir,
            "PHONEBOOTH_PORT": str(port),
            "PHONEBOOTH_API_KEY": BENCH_KEY,
            "PHONEBOOTH_LOG_LEVEL": "warning",
        }
        if database_url:
            env["PHONEBOOTH_DATABASE_URL"] = database_url
        process = subprocess.Popen(
            [sys.executable, "-m", "phonebooth", "serve"], env=env, stdout=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/v1/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("server did not start within 60 s")
            yield base, BENCH_KEY
        finally:
            process.terminate()
            process.wait(timeout=10)
