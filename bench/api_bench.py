"""Requests per second and p50/p99 latency of GET and POST /v1/agents.

    .venv/bin/python bench/api_bench.py                  # starts its own server (SQLite)
    .venv/bin/python bench/api_bench.py --server http://127.0.0.1:8000 --api-key sk_live_...
    .venv/bin/python bench/api_bench.py --database-url postgresql+asyncpg://...

Each request is timed from send to full response on a client with --concurrency connections.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _server import running_server

AGENT = {
    "name": "bench",
    "prompt": "You are a benchmark agent.",
    "voice": "en_US-joe-medium",
    "product": "spark",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
            },
            "endpoint": {"url": "https://api.example.com/lookup", "headers": {"X-Key": "k"}},
        }
    ],
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    client: httpx.AsyncClient, method: str, path: str, body: Any, total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            response = await client.request(method, path, json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "rps": total / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def run(server: str, key: str, total: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server, headers=headers, limits=limits) as client:
        for _ in range(20):  # a realistic list and a warm server
            await client.post("/v1/agents", json=AGENT)
        print(f"server {server}, {total} requests per case, concurrency {concurrency}")
        for method, body in (("GET", None), ("POST", AGENT)):
            figures = await measure(client, method, "/v1/agents", body, total, concurrency)
            print(
                f"{method:4} /v1/agents  {figures['rps']:8.1f} req/s   "
                f"p50 {figures['p50_ms']:6.2f} ms   p99 {figures['p99_ms']:6.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server")
    parser.add_argument("--api-key")
    parser.add_argument("--database-url", help="when starting our own server")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.server:
        if not args.api_key:
            parser.error("--api-key is required with --server")
        asyncio.run(run(args.server, args.api_key, args.requests, args.concurrency))
        return
    with running_server(args.database_url) as (server, key):
        asyncio.run(run(server, key, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
