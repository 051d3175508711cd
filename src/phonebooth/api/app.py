"""`create_app(settings)`: the FastAPI application with its lifespan. Nothing at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from phonebooth import __version__
from phonebooth.api.bootstrap import prepare_installation
from phonebooth.api.errors import install_error_handlers
from phonebooth.api.routes import (
    agents,
    calls,
    carrier,
    deliveries,
    endpoints,
    keys,
    meta,
    numbers,
    phone,
    recordings,
    webhook,
)
from phonebooth.api.state import AppState
from phonebooth.calls.retention import RecordingRetention
from phonebooth.config import Settings

__all__ = ["create_app"]

log = logging.getLogger("phonebooth.api")


async def _warm(state: AppState) -> None:
    """Models load once, in the background: the first call should not pay for them."""
    if state.llm_choice.llm is not None:
        await state.llm_choice.llm.warm()
    engines = await state.sessions.engines()
    ready = ", ".join(
        [*([engines.stt.name] if engines.stt else []), *(t.name for t in engines.tts)]
    )
    log.info("speech engines ready: %s", ready or "none installed (text calls only)")


def create_app(settings: Settings, *, warm_engines: bool = False) -> FastAPI:
    """`warm_engines`: load the speech engines and the model at start-up (`serve` does; tests
    load them on first use instead)."""
    state = AppState.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await prepare_installation(settings, state.db)
        await state.calls.sweep_interrupted()
        state.dispatcher.start()
        retention = RecordingRetention(
            state.db, settings.data_dir, days=settings.recording_retention_days
        )
        retention.start()
        warming = asyncio.create_task(_warm(state)) if warm_engines else None
        try:
            yield
        finally:
            if warming is not None:
                warming.cancel()
            await retention.stop()
            await state.close()

    app = FastAPI(
        title="phonebooth",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.phonebooth = state
    install_error_handlers(app)
    for module in (
        meta,
        agents,
        numbers,
        webhook,
        endpoints,
        keys,
        calls,
        carrier,
        deliveries,
        recordings,
        phone,
    ):
        app.include_router(module.router)
    return app
