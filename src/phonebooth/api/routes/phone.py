"""The browser phone: `GET /phone`, `POST /v1/web-sessions` and `WS /v1/web/call`.

The page trades an API key once for a call-only token (architecture section 10). Tokens are
signed with a subkey of the installation secret in `<data_dir>/recording-key` (the same file
that signs recording links, `voice/recording.py`): servers behind one public URL share that
one file, and a token minted by one of them is accepted by all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, field_validator

from phonebooth.api.deps import AnyCaller, Session, State, parse_body, read_json
from phonebooth.api.state import AppState
from phonebooth.contract.numbers import check_e164
from phonebooth.core.errors import NotFoundError
from phonebooth.core.timefmt import iso
from phonebooth.storage.numbers import find_number
from phonebooth.telephony.browser import BrowserPhone, WebCallTokens

__all__ = ["WebSessionCreate", "content_security_policy", "router", "web_call_tokens"]

router = APIRouter(tags=["browser phone"])

_ASSETS = {
    "phone.js": "text/javascript; charset=utf-8",
    "phone-worklet.js": "text/javascript; charset=utf-8",
    "phone.css": "text/css; charset=utf-8",
    "phone.svg": "image/svg+xml",
}
# A Host header fit to be echoed into the policy (anything else leaves connect-src at 'self').
_HOST = re.compile(r"([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


class WebSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    to_number: str

    _number = field_validator("to_number")(check_e164)


def web_call_tokens(state: AppState) -> WebCallTokens:
    """Tokens keyed with the installation secret the recordings already keep (read lazily)."""
    return WebCallTokens(lambda: state.recordings.key)


@router.post("/v1/web-sessions", status_code=201)
async def create_web_session(
    request: Request, response: Response, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    """A token that can start web calls to one number of the caller's organization for at
    most 10 minutes; the page keeps it instead of the API key."""
    body = parse_body(WebSessionCreate, await read_json(request))
    number = await find_number(session, body.to_number)
    if number is None or number.org_id != caller.org_id:
        raise NotFoundError("Phone number not found")
    token, grant = web_call_tokens(state).mint(caller.org_id, number.number)
    response.headers["Cache-Control"] = "no-store"
    return {
        "token": token,
        "expires_at": iso(datetime.fromtimestamp(grant.expires_at, UTC)),
        "to_number": number.number,
    }


@router.websocket("/v1/web/call")
async def web_call(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.phonebooth
    phone = BrowserPhone(
        state.carrier,
        web_call_tokens(state),
        own_url=state.settings.resolved_public_url,
        allowed_origins=state.settings.allowed_origin_list,
    )
    await phone.handle(websocket)


def content_security_policy(host: str | None) -> str:
    """Scripts, styles, worklets and sockets from this server only; no inline code, no
    plugins, no framing, and Trusted Types so the browser itself refuses HTML sinks."""
    sockets = "'self'"
    if host and _HOST.fullmatch(host):
        sockets += f" ws://{host} wss://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "media-src 'self'",
            "worker-src 'self'",
            f"connect-src {sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


@cache
def _asset(name: str) -> bytes:
    return resources.files("phonebooth.api").joinpath("static", name).read_bytes()


def _security_headers(request: Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(request.headers.get("host")),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


@router.get("/phone", include_in_schema=False)
async def phone_page(request: Request) -> Response:
    return Response(
        _asset("phone.html"),
        media_type="text/html; charset=utf-8",
        headers=_security_headers(request),
    )


@router.get("/phone/{name}", include_in_schema=False)
async def phone_asset(name: str, request: Request) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundError("Not found")
    return Response(_asset(name), media_type=media_type, headers=_security_headers(request))
