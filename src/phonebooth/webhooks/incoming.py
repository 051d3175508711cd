"""Judging a `call.incoming` answer (contract 3.3). Pure: bytes and a status in, a verdict out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from phonebooth.contract.agent_config import WebhookAnswer, parse_webhook_answer
from phonebooth.core.errors import ValidationFailed

__all__ = ["AnswerVerdict", "judge_answer", "judge_failure"]

DeliveryStatus = Literal["delivered", "failed"]


@dataclass(frozen=True)
class AnswerVerdict:
    """`config` is set only for a usable answer; otherwise `reason` says why not."""

    reason: str | None
    delivery_status: DeliveryStatus
    failure_category: str | None
    config: WebhookAnswer | None = None
    errors: tuple[str, ...] = ()
    http_status: int | None = None

    @property
    def usable(self) -> bool:
        return self.config is not None


def judge_failure(category: str) -> AnswerVerdict:
    """No answer at all: dns, connection, tls, url_not_allowed or timeout."""
    return AnswerVerdict(category, "failed", category)


def judge_answer(status_code: int, body: bytes, *, truncated: bool = False) -> AnswerVerdict:
    if not 200 <= status_code < 300:
        return AnswerVerdict(f"http_{status_code}", "failed", "http_error", http_status=status_code)
    if truncated:
        return AnswerVerdict(
            "invalid_json",
            "failed",
            "invalid_config",
            errors=("answer body is larger than 1 MiB",),
            http_status=status_code,
        )
    text = body.strip()
    if not text:
        return AnswerVerdict("empty", "delivered", None, http_status=status_code)
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return AnswerVerdict(
            "invalid_json",
            "failed",
            "invalid_config",
            errors=(f"answer is not JSON: {exc.__class__.__name__}",),
            http_status=status_code,
        )
    if data is None or data == {}:
        return AnswerVerdict("empty", "delivered", None, http_status=status_code)
    try:
        config = parse_webhook_answer(data)
    except ValidationFailed as failure:
        errors = tuple(error.as_text() for error in failure.errors)
        return AnswerVerdict(
            "invalid_config", "failed", "invalid_config", errors=errors, http_status=status_code
        )
    return AnswerVerdict(None, "delivered", None, config=config, http_status=status_code)
