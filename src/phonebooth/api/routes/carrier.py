"""`/v1/sim/call`: the simulated carrier's WebSocket (credentials travel in the first message)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from phonebooth.api.state import AppState

__all__ = ["router"]

router = APIRouter(tags=["simulated carrier"])


@router.websocket("/v1/sim/call")
async def simulated_call(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.phonebooth
    await state.carrier.handle(websocket)
