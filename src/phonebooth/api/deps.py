"""Request dependencies: the database session, the calling key, and body parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.api.state import AppState
from phonebooth.contract.fields import translate
from phonebooth.core.errors import (
    AuthenticationError,
    FieldError,
    PermissionDeniedError,
    ValidationFailed,
)
from phonebooth.storage.orgs import authenticate_key

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "AdminCaller",
    "AnyCaller",
    "Caller",
    "Session",
    "State",
    "parse_body",
    "read_json",
]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.phonebooth
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.db.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True)
class Caller:
    org_id: int
    role: str
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthenticationError("Missing Authorization header; send 'Bearer sk_live_...'")
    if scheme.lower() not in {"bearer", "token"} or not token.strip():
        raise AuthenticationError("Authorization must be 'Bearer <api key>' or 'Token <api key>'")
    return token.strip()


async def get_caller(request: Request, session: Session) -> Caller:
    key = await authenticate_key(session, _bearer(request))
    if key is None:
        raise AuthenticationError("Invalid or revoked API key")
    await session.commit()  # persists a `last_used_at` touch, if any
    return Caller(org_id=key.org_id, role=key.role, key_id=key.id)


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if not caller.is_admin:
        raise PermissionDeniedError("This needs an admin API key")
    return caller


AnyCaller = Annotated[Caller, Depends(get_caller)]
AdminCaller = Annotated[Caller, Depends(get_admin)]


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise ValidationFailed([FieldError("body", "is required (a JSON object)")])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed([FieldError("body", "is not valid JSON")]) from None


def parse_body(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(translate(exc)) from None
