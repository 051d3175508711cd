"""What the application holds for its lifetime, built once by `create_app`."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from phonebooth.calls.registry import LiveCalls
from phonebooth.calls.session import CallLimits, CallSession, Send
from phonebooth.calls.setup import CallService, StartedCall
from phonebooth.config import Settings
from phonebooth.providers.llm.select import LLMChoice, choose_llm, tier_model
from phonebooth.storage.db import Database
from phonebooth.storage.tables import utcnow
from phonebooth.telephony.sim import SimulatedCarrier
from phonebooth.webhooks.dispatcher import Dispatcher
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
    llm_choice: LLMChoice
    dispatcher: Dispatcher
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
        llm_choice = choose_llm(settings, os.environ)
        limits = CallLimits(
            max_call_seconds=settings.max_call_seconds,
            silence_checkin_seconds=settings.silence_checkin_seconds,
            silence_hangup_seconds=settings.silence_hangup_seconds,
        )

        def session_for(call: StartedCall, send: Send) -> CallSession:
            assert call.config is not None
            return CallSession(
                calls,
                call,
                llm=llm_choice.llm,
                model=tier_model(settings, call.config.product, llm_choice.provider or "openai"),
                client=client,
                send=send,
                limits=limits,
            )

        carrier = SimulatedCarrier(db, calls, session_for)
        dispatcher = Dispatcher(db, client, clock=utcnow, rng=random.random)
        return cls(settings, db, policy, client, registry, calls, carrier, llm_choice, dispatcher)

    async def close(self) -> None:
        await self.dispatcher.stop()
        await self.calls.drain()
        await self.client.aclose()
        if self.llm_choice.llm is not None:
            await self.llm_choice.llm.aclose()
        await self.db.dispose()
