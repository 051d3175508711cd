"""One signed HTTP request to a customer URL (webhook or tool), with a size-capped answer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from phonebooth.webhooks.signing import build_headers

__all__ = ["MAX_ANSWER_BYTES", "Exchange", "send_signed"]

MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Exchange:
    """What came back: status, at most `max_body` bytes of body, and how long it took."""

    status_code: int
    body: bytes
    truncated: bool
    latency_ms: float
    headers: httpx.Headers


async def send_signed(
    client: httpx.AsyncClient,
    *,
    method: str,
    url: str,
    body: bytes,
    secrets: Sequence[str],
    timestamp: int,
    event_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    call_id: int | None = None,
    max_body: int = MAX_ANSWER_BYTES,
) -> Exchange:
    """Send once (no retries, no redirects); raise what the client raises on failure.

    Customer headers go first so that ours (signatures, ids, type) always win; the caller bounds the
    whole exchange with its own deadline (`asyncio.timeout`).
    """
    headers = httpx.Headers(extra_headers or {})
    headers.update(  # case-insensitive: a customer's `content-type` cannot shadow ours
        build_headers(
            secrets=secrets,
            method=method,
            url=url,
            body=body,
            timestamp=timestamp,
            event_id=event_id,
        )
    )
    if call_id is not None:
        headers["X-ThunderPhone-Call-ID"] = str(call_id)
    started = time.perf_counter()
    request = client.build_request(method, url, content=body or None, headers=headers)
    response = await client.send(request, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body:
                truncated = True
                break
    finally:
        await response.aclose()
    data = b"".join(chunks)[:max_body]
    latency = (time.perf_counter() - started) * 1000
    return Exchange(response.status_code, data, truncated, latency, response.headers)
