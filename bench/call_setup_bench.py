"""Call setup latency over the simulated carrier, against the floor of a bare webhook POST.

    .venv/bin/python bench/call_setup_bench.py [--calls 300] [--concurrency 1,8]

Starts its own `phonebooth serve` (SQLite in a temp dir) and a receiver process on 127.0.0.1
that answers every `call.incoming` at once with a valid configuration. Setup latency is the
time from the carrier's `start` message to the `setup` message (configuration resolved), as
the carrier sees it. The floor is the same receiver's round trip with a bare httpx POST of
the same body. Setups per second are measured with several carriers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).parent))
from _server import _free_port, running_server

BODY = (
    b'{"data":{"call_id":1,"from_number":"+15555550100","to_number":"+15555550200"},'
    b'"type":"call.incoming"}'
)


def pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def floor(url: str, count: int) -> list[float]:
    async with httpx.AsyncClient() as client:
        for _ in range(20):
            await client.post(url, content=BODY)
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post(url, content=BODY)
            response.read()
            samples.append((time.perf_counter() - started) * 1000)
        return samples


async def one_call(ws_url: str, key: str) -> float:
    async with connect(ws_url) as ws:
        start = {
            "type": "start",
            "api_key": key,
            "to_number": "+15555550200",
            "from_number": "+15555550100",
            "audio": False,
        }
        started = time.perf_counter()
        await ws.send(json.dumps(start))
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "setup":
                elapsed = (time.perf_counter() - started) * 1000
                assert message["config_source"] == "webhook", message
                break
        await ws.send(json.dumps({"type": "hangup"}))
        async for raw in ws:
            if json.loads(raw)["type"] == "ended":
                break
    return elapsed


async def setups(ws_url: str, key: str, count: int, concurrency: int) -> tuple[list[float], float]:
    samples: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await one_call(ws_url, key))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, count / (time.perf_counter() - started)


async def run(base: str, key: str, receiver_url: str, calls: int, levels: list[int]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as api:
        agent = await api.post("/v1/agents", json={"name": "b", "prompt": "p", "voice": "v"})
        await api.post(
            "/v1/phone-numbers",
            json={"number": "+15555550200", "inbound_agent_id": agent.json()["id"]},
        )
        await api.put("/v1/webhook", json={"url": receiver_url})
    ws_url = "ws" + base.removeprefix("http") + "/v1/sim/call"
    await setups(ws_url, key, 20, 1)  # warm up
    bare = await floor(receiver_url, calls)
    print(
        f"floor: bare httpx POST to the receiver   p50 {pct(bare, 0.5):6.2f} ms"
        f"   p99 {pct(bare, 0.99):6.2f} ms"
    )
    for level in levels:
        samples, rate = await setups(ws_url, key, calls, level)
        print(
            f"setup, {level:2d} carrier(s) at once:      p50 {pct(samples, 0.5):6.2f} ms"
            f"   p99 {pct(samples, 0.99):6.2f} ms   {rate:7.1f} setups/s"
            f"   p50 ratio to floor {pct(samples, 0.5) / pct(bare, 0.5):5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    port = _free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "_receiver.py"), str(port)]
    )
    try:
        receiver_url = f"http://127.0.0.1:{port}/incoming"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(receiver_url, content=BODY, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with running_server(args.database_url) as (base, key):
            levels = [int(x) for x in args.concurrency.split(",")]
            asyncio.run(run(base, key, receiver_url, args.calls, levels))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


if __name__ == "__main__":
    main()
