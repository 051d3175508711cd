"""The browser page's line, `/v1/web/call` (architecture section 10, contract 2 and 6).

The page never sends an API key here: it traded it for a call-only token, which arrives in
the first message (`{"type": "start", "token": ..., "audio": true}`), never in the URL. The
WebSocket `Origin` must be this server's own address or an allowed origin, so a page on
another site cannot use a token it got hold of. After that the socket speaks exactly the
simulated carrier's protocol (contract 8), as a web call: `direction: "web"`,
`from_number: "web"`, `web.incoming` to endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from phonebooth.core.tokens import (
    WEB_CALL_MAX_TTL,
    TokenError,
    WebCallGrant,
    derive_key,
    mint_web_call_token,
    verify_web_call_token,
)
from phonebooth.telephony.sim import SimulatedCarrier
from phonebooth.telephony.sim_protocol import CLOSE_BAD_MESSAGE, CLOSE_UNAUTHORIZED, ProtocolError

__all__ = [
    "CLOSE_FORBIDDEN_ORIGIN",
    "WEB_FROM_NUMBER",
    "BrowserPhone",
    "WebCallTokens",
    "WebStart",
    "normalize_origin",
    "origin_allowed",
    "parse_web_start",
]

log = logging.getLogger("phonebooth.telephony.browser")

CLOSE_FORBIDDEN_ORIGIN = 4403
WEB_FROM_NUMBER = "web"  # contract 2: the literal caller of every browser session
TOKEN_KEY_PURPOSE = "web-call-token/v1"
_START_TIMEOUT = 10.0
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


@dataclass(frozen=True)
class WebStart:
    token: str
    audio: bool


def parse_web_start(raw: str | bytes) -> WebStart:
    """The page's first message; pure. Extra keys are ignored, as the carrier ignores them."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("message is not JSON") from None
    if not isinstance(message, dict) or message.get("type") != "start":
        raise ProtocolError("the first message must be {'type': 'start', 'token': ...}")
    token = message.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("'token' must be a non-empty string (from POST /v1/web-sessions)")
    audio = message.get("audio", False)
    if not isinstance(audio, bool):
        raise ProtocolError("'audio' must be a boolean")
    return WebStart(token=token, audio=audio)


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case with a default port dropped, as browsers send an
    Origin; None for anything that is not an http(s) origin (including the opaque `null`)."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or str(port) == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _host_of(origin: str) -> str:
    return origin.partition("://")[2]


def origin_allowed(origin: str | None, *, host: str | None, allowed: Collection[str]) -> bool:
    """True when the page that opened the socket came from this server or an allowed origin.

    "This server" is its public origin (in `allowed`) or the Host the request came to, so a
    page served on whatever address the operator used works without configuration. No Origin
    at all (a non-browser client) is refused: those use `/v1/sim/call` with an API key.
    """
    normalized = normalize_origin(origin) if origin else None
    if normalized is None:
        return False
    if normalized in allowed:
        return True
    if not host:
        return False
    scheme = normalized.partition("://")[0]
    requested = normalize_origin(f"{scheme}://{host.strip()}")
    return requested is not None and _host_of(requested) == _host_of(normalized)


class WebCallTokens:
    """Mints and checks call-only tokens with this installation's secret and clock.

    `secret` is read on first use (it may create the key file), and only a purpose-derived
    subkey ever signs, so the secret it shares with other uses signs nothing of theirs.
    """

    def __init__(
        self,
        secret: Callable[[], bytes],
        *,
        clock: Callable[[], float] = time.time,
        ttl: int = WEB_CALL_MAX_TTL,
    ) -> None:
        self._secret = secret
        self._key: bytes | None = None
        self.clock = clock
        self.ttl = ttl

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = derive_key(self._secret(), TOKEN_KEY_PURPOSE)
        return self._key

    def mint(self, org_id: int, to_number: str) -> tuple[str, WebCallGrant]:
        return mint_web_call_token(
            org_id, to_number, key=self.key, now=int(self.clock()), ttl=self.ttl
        )

    def verify(self, token: str) -> WebCallGrant:
        return verify_web_call_token(token, key=self.key, now=int(self.clock()))


class BrowserPhone:
    """Checks the Origin and the token, then hands the socket to the carrier as a web call."""

    def __init__(
        self,
        carrier: SimulatedCarrier,
        tokens: WebCallTokens,
        *,
        own_url: str,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.carrier = carrier
        self.tokens = tokens
        origins = [normalize_origin(own_url), *(normalize_origin(o) for o in allowed_origins)]
        self.allowed = frozenset(o for o in origins if o is not None)

    async def handle(self, websocket: WebSocket) -> None:
        await websocket.accept()  # a close code (4403, 4401) needs an accepted socket
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, host=websocket.headers.get("host"), allowed=self.allowed):
            log.warning("web call refused: origin %r is not allowed", origin)
            await _close(websocket, CLOSE_FORBIDDEN_ORIGIN, "this page's origin is not allowed")
            return
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), _START_TIMEOUT)
            start = parse_web_start(raw)
        except (TimeoutError, ProtocolError, WebSocketDisconnect) as exc:
            reason = str(exc) if isinstance(exc, ProtocolError) else "expected a start message"
            await _close(websocket, CLOSE_BAD_MESSAGE, reason)
            return
        try:
            grant = self.tokens.verify(start.token)
        except TokenError as exc:
            log.info("web call refused: %s token", exc.problem)
            await _close(websocket, CLOSE_UNAUTHORIZED, "invalid or expired web-session token")
            return
        await self.carrier.place(
            websocket,
            org_id=grant.org_id,
            to_number=grant.to_number,
            from_number=WEB_FROM_NUMBER,
            direction="web",
            audio=start.audio,
        )


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):
        await websocket.close(code=code, reason=reason[:120])
