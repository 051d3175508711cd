"""Health and the voice catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from phonebooth.api.deps import AnyCaller, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["meta"])


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/voices")
async def voices(_caller: AnyCaller, state: State) -> dict[str, Any]:
    """Every voice the installed speech engines offer (they load on first use)."""
    engines = await state.sessions.built()
    return engines.catalog.as_api()
