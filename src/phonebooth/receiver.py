"""Toolkit for the customer's side: check that a request really came from phonebooth.

`verify_signature` has the same shape as the official `thunderphone` client's, so a handler can
switch between them. `thunderphone_event` wraps the whole check into a FastAPI dependency:

    @app.post("/thunderphone-webhook")
    async def hook(event: IncomingCallEvent = Depends(thunderphone_event(SECRET))) -> ...:

V2 (method, path and time bound) is checked whenever its header is present; the body-only V1
is accepted only when V2 is absent, for handlers written before V2 existed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar, overload

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from phonebooth.contract.agent_config import WebhookAnswer
from phonebooth.webhooks.signing import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    SIGNATURE_V2_HEADER,
    verify_v1,
    verify_v2,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "SIGNATURE_V2_HEADER",
    "IncomingCallData",
    "IncomingCallEvent",
    "WebhookAnswer",
    "request_target",
    "thunderphone_event",
    "verify_body_signature",
    "verify_signature",
]

Body = bytes | bytearray | memoryview | str
EventT = TypeVar("EventT", bound=BaseModel)


class IncomingCallData(BaseModel):
    call_id: int
    from_number: str
    to_number: str


class IncomingCallEvent(BaseModel):
    """The blocking `*.incoming` request; answer it with a `WebhookAnswer` (or `{}` to decline)."""

    type: Literal["call.incoming", "telephony.incoming", "web.incoming"]
    data: IncomingCallData


def _secrets(secret: str | Sequence[str]) -> list[str]:
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("secret must be a non-empty string or a list of them")
    return secrets


def _as_bytes(body: Body) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def verify_signature(
    header: str | None,
    *,
    secret: str | Sequence[str],
    method: str,
    path: str,
    body: Body,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `header` (`X-ThunderPhone-Signature-V2`) is valid and at most `tolerance` old.

    `secret` may be a list so both secrets pass during a rotation. `path` is the path plus `?`
    and the query exactly as received; `now` defaults to the current time.
    """
    secrets = _secrets(secret)
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    current = time.time() if now is None else now
    return verify_v2(
        header,
        secrets=secrets,
        method=method,
        path=path,
        body=_as_bytes(body),
        now=current,
        tolerance=tolerance,
    )


def verify_body_signature(body: Body, signature: str | None, secret: str | Sequence[str]) -> bool:
    """True when `signature` (`X-ThunderPhone-Signature`, V1) matches the body.

    V1 binds neither method, path nor time: prefer `verify_signature` when V2 is present.
    """
    raw = _as_bytes(body)
    matches = [verify_v1(raw, signature, s) for s in _secrets(secret)]  # no early exit
    return any(matches)


def request_target(request: Request) -> str:
    """The path and query as they came over the wire (still percent-encoded), as V2 signs them."""
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
    else:  # a server that omits raw_path: the decoded path, re-encoded the usual way
        path = request.url.components.path or "/"
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


@overload
def thunderphone_event(
    secret: str | Sequence[str], *, tolerance: int = ..., accept_v1: bool = ...
) -> Callable[[Request], Awaitable[IncomingCallEvent]]: ...


@overload
def thunderphone_event(
    secret: str | Sequence[str],
    *,
    model: type[EventT],
    tolerance: int = ...,
    accept_v1: bool = ...,
) -> Callable[[Request], Awaitable[EventT]]: ...


def thunderphone_event(
    secret: str | Sequence[str],
    *,
    model: type[BaseModel] = IncomingCallEvent,
    tolerance: int = DEFAULT_TOLERANCE,
    accept_v1: bool = True,
) -> Callable[[Request], Awaitable[BaseModel]]:
    """A FastAPI dependency: verify the request's signature, then parse its body as `model`.

    401 when the signature is missing or wrong, 422 when a verified body is not a `model`.
    `accept_v1=False` refuses requests that carry only the replayable V1 signature.
    """
    secrets = _secrets(secret)

    async def dependency(request: Request) -> BaseModel:
        body = await request.body()
        v2 = request.headers.get(SIGNATURE_V2_HEADER)
        if v2 is not None:
            valid = verify_signature(
                v2,
                secret=secrets,
                method=request.method,
                path=request_target(request),
                body=body,
                tolerance=tolerance,
            )
        else:
            v1 = request.headers.get(SIGNATURE_HEADER)
            valid = accept_v1 and verify_body_signature(body, v1, secrets)
        if not valid:
            raise HTTPException(status_code=401, detail="invalid ThunderPhone signature")
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(status_code=422, detail="body is not a valid event") from exc

    return dependency
