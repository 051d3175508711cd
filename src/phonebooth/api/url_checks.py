"""The literal-form URL check the REST API applies when it stores a URL (contract 4.3)."""

from __future__ import annotations

from phonebooth.contract.agent_config import FunctionTool
from phonebooth.core.errors import FieldError, ValidationFailed
from phonebooth.webhooks.url_policy import check_literal_url

__all__ = ["check_tool_urls", "check_url"]


def check_url(field: str, url: str, *, allow_private: bool) -> None:
    problem = check_literal_url(url, allow_private=allow_private)
    if problem:
        raise ValidationFailed([FieldError(field, problem)])


def check_tool_urls(tools: list[FunctionTool], *, allow_private: bool) -> None:
    errors = []
    for index, tool in enumerate(tools):
        problem = check_literal_url(tool.endpoint.url, allow_private=allow_private)
        if problem:
            errors.append(FieldError(f"tools[{index}].endpoint.url", problem))
    if errors:
        raise ValidationFailed(errors)
