"""The blocking `*.incoming` exchange: every receiver at once, decided in order (2.1, 2.3).

Receivers are called concurrently; the first usable answer in receiver order wins, and a later
receiver counts only once every earlier one has failed or answered empty. The decision is
returned as soon as it is certain; the remaining exchanges run on (never past the deadline)
so that every delivery is recorded with its true outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from phonebooth.storage.receivers import Receiver
from phonebooth.webhooks.incoming import AnswerVerdict, judge_answer, judge_failure
from phonebooth.webhooks.sender import send_signed
from phonebooth.webhooks.signing import serialize
from phonebooth.webhooks.url_policy import failure_reason

__all__ = ["Decision", "ExchangeOutcome", "IncomingExchange"]


@dataclass(frozen=True)
class ExchangeOutcome:
    receiver: Receiver
    verdict: AnswerVerdict
    latency_ms: int
    attempted_at: datetime


@dataclass(frozen=True)
class Decision:
    """The configuration (when a receiver gave one) and, otherwise, the deciding failure."""

    winner: ExchangeOutcome | None
    deciding: ExchangeOutcome | None
    latency_ms: int

    def config_error(self) -> dict[str, object] | None:
        if self.winner is not None:
            return None
        if self.deciding is None:
            return {"reason": "no_webhook", "errors": [], "receiver": None}
        return {
            "reason": self.deciding.verdict.reason,
            "errors": list(self.deciding.verdict.errors),
            "receiver": self.deciding.receiver.receiver_id,
        }


class IncomingExchange:
    """Runs one call's exchange; `decide()` returns early, `finished()` waits for all."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        receivers: list[Receiver],
        data: dict[str, object],
        *,
        timeout: float,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._receivers = receivers
        self._data = data
        self._timeout = timeout
        self._wall_clock = wall_clock
        self._tasks: list[asyncio.Task[ExchangeOutcome]] = []

    async def _exchange(self, receiver: Receiver, deadline: float) -> ExchangeOutcome:
        attempted_at = self._wall_clock()
        started = time.perf_counter()
        body = serialize({"data": self._data, "type": receiver.event_type})
        verdict: AnswerVerdict
        try:
            async with asyncio.timeout_at(deadline):
                exchange = await send_signed(
                    self._client,
                    method="POST",
                    url=receiver.url,
                    body=body,
                    secrets=receiver.secrets,
                    timestamp=int(attempted_at.timestamp()),
                )
            verdict = judge_answer(
                exchange.status_code, exchange.body, truncated=exchange.truncated
            )
        except TimeoutError:
            verdict = judge_failure("timeout")
        except (httpx.HTTPError, OSError, ValueError) as exc:
            verdict = judge_failure(failure_reason(exc))
        except Exception as exc:  # the policy's own errors, and anything unexpected
            verdict = judge_failure(failure_reason(exc))
        latency = round((time.perf_counter() - started) * 1000)
        return ExchangeOutcome(receiver, verdict, latency, attempted_at)

    async def decide(self) -> Decision:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        self._tasks = [
            asyncio.create_task(self._exchange(receiver, deadline)) for receiver in self._receivers
        ]
        winner: ExchangeOutcome | None = None
        for task in self._tasks:
            outcome = await asyncio.shield(task)
            if outcome.verdict.usable:
                winner = outcome
                break
        # No usable answer: every receiver failed or was empty; the first in order decides.
        deciding = self._tasks[0].result() if winner is None and self._tasks else None
        latency = round((time.perf_counter() - started) * 1000)
        return Decision(winner, deciding, latency)

    async def finished(self) -> list[ExchangeOutcome]:
        """Every receiver's outcome (all are bounded by the deadline)."""
        return list(await asyncio.gather(*self._tasks))
