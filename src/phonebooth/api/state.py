"""What the application holds for its lifetime, built once by `create_app`."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import httpx

from phonebooth.api.sessions import SessionFactory
from phonebooth.calls.registry import LiveCalls
from phonebooth.calls.setup import CallService
from phonebooth.config import Settings
from phonebooth.providers.llm.select import LLMChoice, choose_llm
from phonebooth.storage.db import Database
from phonebooth.storage.tables import utcnow
from phonebooth.telephony.sim import SimulatedCarrier
from phonebooth.voice.recording import RecordingStore
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
    sessions: SessionFactory
    recordings: RecordingStore

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        db = Database(settings.resolved_database_url)
        policy = UrlPolicy(allow_private=settings.private_urls_allowed)
        client = make_client(policy, timeout=httpx.Timeout(60.0))
        registry = LiveCalls(settings.concurrent_call_limit)
        recordings = RecordingStore(
            settings.data_dir, settings.resolved_public_url, enabled=settings.recordings
        )
        calls = CallService(
            db=db,
            client=client,
            registry=registry,
            incoming_timeout=settings.incoming_timeout,
            recording_url=recordings.url_for,
        )
        llm_choice = choose_llm(settings, os.environ)
        sessions = SessionFactory(settings, calls, client, llm_choice, recordings=recordings)
        carrier = SimulatedCarrier(db, calls, sessions)
        dispatcher = Dispatcher(db, client, clock=utcnow, rng=random.random)
        return cls(
            settings,
            db,
            policy,
            client,
            registry,
            calls,
            carrier,
            llm_choice,
            dispatcher,
            sessions,
            recordings=recordings,
        )

    async def close(self) -> None:
        await self.dispatcher.stop()
        await self.calls.drain()
        await self.client.aclose()
        if self.sessions.built_engines is not None:
            await self.sessions.built_engines.aclose()
        if self.llm_choice.llm is not None:
            await self.llm_choice.llm.aclose()
        await self.db.dispose()
