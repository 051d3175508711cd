"""One exception tree for the whole package; the API maps it to HTTP in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "FieldError",
    "NotFoundError",
    "PermissionDeniedError",
    "PhoneboothError",
    "ValidationFailed",
]


@dataclass(frozen=True)
class FieldError:
    """One validation failure: where (a dotted path such as `tools[0].function.name`) and why."""

    field: str
    message: str

    def as_text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class PhoneboothError(Exception):
    """Base of every error phonebooth raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(PhoneboothError):
    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        if detail is None:
            first = errors[0].as_text() if errors else "invalid input"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            detail = f"Invalid request: {first}{more}"
        super().__init__(detail)
        self.errors = errors


class AuthenticationError(PhoneboothError):
    pass


class PermissionDeniedError(PhoneboothError):
    pass


class NotFoundError(PhoneboothError):
    pass


class ConflictError(PhoneboothError):
    pass
