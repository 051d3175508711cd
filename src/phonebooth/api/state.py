"""What the application holds for its lifetime, built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from phonebooth.calls.registry import LiveCalls
from phonebooth.calls.setup import CallService
from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.telephony.sim import SimulatedCarrier
from phonebooth.webhooks.url_policy import UrlPolicy, make_client

__all__ = ["AppState"]


@dataclass
class AppState:
    """Built by `create_app`; the HTTP client and services live as long as the app."""

    settings: Settings
    db: Database
    policy: UrlPolicy
    client: httpx.AsyncClient
    registry: LiveCalls
    calls: CallService
    carrier: SimulatedCarrier
    voices: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        db = Database(settings.resolved_database_url)
        policy = UrlPolicy(allow_private=settings.private_urls_allowed)
        client = make_client(policy, timeout=httpx.Timeout(60.0))
        registry = LiveCalls(settings.concurrent_call_limit)
        calls = CallService(
            db=db, client=client, registry=registry, incoming_timeout=settings.incoming_timeout
        )
        carrier = SimulatedCarrier(db, calls)
        return cls(settings, db, policy, client, registry, calls, carrier)

    async def close(self) -> None:
        await self.calls.drain()
        await self.client.aclose()
        await self.db.dispose()
