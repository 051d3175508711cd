"""The simulated carrier: one WebSocket delivers one inbound call through the real call setup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from phonebooth.calls.session import CallSession
from phonebooth.calls.setup import CallRefused, CallService, Direction, StartedCall
from phonebooth.calls.voice_session import VoiceCallSession
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import authenticate_key
from phonebooth.telephony.sim_protocol import (
    CLOSE_BAD_MESSAGE,
    CLOSE_BUSY,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNKNOWN_NUMBER,
    CallerHangup,
    CallerText,
    Media,
    ProtocolError,
    parse_client_message,
    parse_start,
)

__all__ = ["SimulatedCarrier"]

log = logging.getLogger("phonebooth.telephony.sim")

_START_TIMEOUT = 10.0

Sender = Callable[[dict[str, Any]], Awaitable[None]]
SessionFactory = Callable[[StartedCall, Sender, bool], Awaitable[CallSession]]


class SimulatedCarrier:
    """Runs the carrier side of one WebSocket: start, setup, the call, ended."""

    def __init__(self, db: Database, calls: CallService, sessions: SessionFactory) -> None:
        self.db = db
        self.calls = calls
        self.sessions = sessions

    async def _org_for_key(self, api_key: str) -> int | None:
        async with self.db.session() as session:
            key = await authenticate_key(session, api_key)
            await session.commit()
            return None if key is None else key.org_id

    async def handle(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), _START_TIMEOUT)
            start = parse_start(raw)
        except (TimeoutError, ProtocolError, WebSocketDisconnect) as exc:
            reason = str(exc) if isinstance(exc, ProtocolError) else "expected a start message"
            await _close(websocket, CLOSE_BAD_MESSAGE, reason)
            return
        org_id = await self._org_for_key(start.api_key)
        if org_id is None:
            await _close(websocket, CLOSE_UNAUTHORIZED, "invalid or revoked API key")
            return
        await self.place(
            websocket,
            org_id=org_id,
            to_number=start.to_number,
            from_number=start.from_number,
            direction="inbound",
            audio=start.audio,
        )

    async def place(
        self,
        websocket: WebSocket,
        *,
        org_id: int,
        to_number: str,
        from_number: str,
        direction: Direction,
        audio: bool,
    ) -> None:
        """Everything after authentication: setup (or a refusal close), the call, `ended`.

        Shared by every transport that speaks this protocol once it knows who is calling
        (the browser page places `direction="web"` calls from `"web"`).
        """
        try:
            call = await self.calls.start(
                org_id=org_id, to_number=to_number, from_number=from_number, direction=direction
            )
        except CallRefused as refused:
            code = CLOSE_UNKNOWN_NUMBER if refused.reason == "unknown_number" else CLOSE_BUSY
            await _close(websocket, code, refused.detail)
            return
        await self._run(websocket, call, audio)

    async def _run(self, websocket: WebSocket, call: StartedCall, audio: bool) -> None:
        session: CallSession | None = None
        end_reason = "error"
        try:
            if call.config is not None:
                # Before `setup`: the speech engines are ready when the caller's audio starts.
                session = await self._session(call, websocket, audio)
            await websocket.send_json({"type": "setup", **call.setup_message()})
            if session is not None:
                end_reason = await self._converse(websocket, session)
        except WebSocketDisconnect:
            end_reason = "caller_hangup"
        except Exception:
            log.exception("call %s failed", call.call_id, extra={"call_id": call.call_id})
            end_reason = "error"
        finally:
            if session is not None:
                ended = await session.finish(end_reason)
            else:
                ended = await self.calls.end(call.call_id, end_reason)
        await _send_and_close(websocket, {"type": "ended", **ended})

    async def _session(
        self, call: StartedCall, websocket: WebSocket, audio: bool
    ) -> CallSession | None:
        try:
            return await self.sessions(call, _safe_sender(websocket), audio)
        except Exception:
            log.exception("call %s could not start", call.call_id, extra={"call_id": call.call_id})
            return None

    async def _converse(self, websocket: WebSocket, session: CallSession) -> str:
        """The conversation until it ends; caller messages feed it, agent messages go out.

        One reader task for the whole call (not one per 20 ms frame): the session's end
        cancels it.
        """
        runner = asyncio.create_task(session.run())
        reader = asyncio.create_task(self._read(websocket, session))
        try:
            await asyncio.wait({reader, runner}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not runner.done():
                session.end_soon("caller_hangup")  # the socket closed without a hangup
            return await runner
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if not runner.done():
                session.end_soon("error")
                await runner

    async def _read(self, websocket: WebSocket, session: CallSession) -> None:
        voice = session if isinstance(session, VoiceCallSession) else None
        while True:
            try:
                message = parse_client_message(await websocket.receive_text())
            except ProtocolError as exc:
                await websocket.send_json({"type": "error", "detail": str(exc)})
                continue
            except (WebSocketDisconnect, RuntimeError):
                return
            if isinstance(message, CallerHangup):
                session.end_soon("caller_hangup")
                return
            if isinstance(message, CallerText):
                session.caller_text(message.text)
            elif isinstance(message, Media) and voice is not None:
                await voice.caller_media(message.payload)


def _safe_sender(websocket: WebSocket) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """Agent messages to a caller who may already be gone: a lost message is not an error."""

    async def send(message: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.send_json(message)

    return send


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):
        await websocket.close(code=code, reason=reason[:120])


async def _send_and_close(websocket: WebSocket, message: dict[str, Any]) -> None:
    try:
        await websocket.send_json(message)
        await websocket.close(code=1000)
    except (RuntimeError, WebSocketDisconnect):
        pass  # the caller already left; the call is recorded either way
