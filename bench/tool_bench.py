"""What the tool runner adds over a bare HTTP request to the same endpoint.

    .venv/bin/python bench/tool_bench.py [--requests 2000]

A receiver process on 127.0.0.1 answers every request at once with a small JSON body. The
floor is a bare httpx POST of the same arguments; the runner does what a call does (argument
validation against the schema, URL policy check and pinned connection, signing, result
shaping and truncation check). Both reuse their connections.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _server import _free_port

from phonebooth.agent.tools import ToolRequest, ToolRunner
from phonebooth.contract.agent_config import FunctionTool
from phonebooth.webhooks.url_policy import UrlPolicy, make_client

ARGUMENTS = '{"date":"2025-01-02","party":2}'


def pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(url: str, count: int) -> None:
    tool = FunctionTool.model_validate(
        {
            "type": "function",
            "function": {
                "name": "search",
                "parameters": {
                    "type": "object",
                    "required": ["date"],
                    "properties": {"date": {"type": "string"}, "party": {"type": "integer"}},
                },
            },
            "endpoint": {"url": url, "headers": {"X-Api-Key": "k"}},
        }
    )
    bare: list[float] = []
    runner_ms: list[float] = []
    async with (
        httpx.AsyncClient() as plain,
        make_client(UrlPolicy(allow_private=True), timeout=30) as client,
    ):
        for index in range(count + 100):
            started = time.perf_counter()
            response = await plain.post(
                url, content=ARGUMENTS, headers={"Content-Type": "application/json"}
            )
            response.json()
            if index >= 100:
                bare.append((time.perf_counter() - started) * 1000)
            # a fresh runner per call (guards count per call), like a new call would have
            runner = ToolRunner(client, tools=[tool], call_id=1, secrets=["whsec_bench"])
            started = time.perf_counter()
            (outcome,) = await runner.run_step([ToolRequest("c", "search", ARGUMENTS)])
            if index >= 100:
                runner_ms.append((time.perf_counter() - started) * 1000)
            assert outcome.sent and "error" not in outcome.result, outcome
    overhead = [r - b for r, b in zip(runner_ms, bare, strict=True)]
    print(f"{count} requests each, interleaved")
    print(f"bare httpx POST        p50 {pct(bare, 0.5):6.3f} ms   p99 {pct(bare, 0.99):6.3f} ms")
    print(
        f"tool runner            p50 {pct(runner_ms, 0.5):6.3f} ms"
        f"   p99 {pct(runner_ms, 0.99):6.3f} ms"
    )
    print(
        f"overhead (runner-bare) p50 {pct(runner_ms, 0.5) - pct(bare, 0.5):6.3f} ms"
        f"   p99 {pct(overhead, 0.99):6.3f} ms (pairwise)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    port = _free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "_receiver.py"), str(port)]
    )
    url = f"http://127.0.0.1:{port}/tools/search"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        asyncio.run(run(url, args.requests))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


if __name__ == "__main__":
    main()
