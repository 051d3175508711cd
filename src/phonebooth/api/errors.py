"""The one place where exceptions become HTTP answers (`{"detail": ...}`, 400 for validation)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from phonebooth.contract.fields import format_loc
from phonebooth.core.errors import (
    AuthenticationError,
    ConflictError,
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    PhoneboothError,
    ValidationFailed,
)

__all__ = ["install_error_handlers", "validation_response"]

log = logging.getLogger("phonebooth.api")

_STATUS: list[tuple[type[PhoneboothError], int]] = [
    (ValidationFailed, 400),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
]


def validation_response(errors: list[FieldError], detail: str | None = None) -> JSONResponse:
    exc = ValidationFailed(errors, detail)
    return JSONResponse(
        status_code=400,
        content={
            "detail": exc.detail,
            "errors": [{"field": e.field, "message": e.message} for e in errors],
        },
    )


async def _phonebooth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PhoneboothError)
    if isinstance(exc, ValidationFailed):
        return validation_response(exc.errors, exc.detail)
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content={"detail": exc.detail}, headers=headers)


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own checks (query and path parameters) answer 400, never 422."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p not in {"query", "path", "body", "header"}]
        errors.append(FieldError(format_loc(loc), str(error.get("msg", "is invalid"))))
    return validation_response(errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PhoneboothError, _phonebooth_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
