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
    languages = sorted({v["language"] for v in state.voices})
    return {"voices": state.voices, "languages": languages}
