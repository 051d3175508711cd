"""What a cloud engine said when it refused a request, for our error messages."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["service_error_detail"]


def service_error_detail(response: httpx.Response) -> str:
    """The service's own sentence (`{"error": {"message": ...}}`) when it sent one."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:200]
    return str(body)[:200]
