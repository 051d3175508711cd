"""Turning pydantic's validation errors into the contract's field/message pairs.

The contract wants messages that name the field and the rule (`"product: 'fast' is not one of
spark, bolt, zap"`) and never echo a value found under `endpoint.headers`, so messages are built
here from the error type rather than taken from pydantic's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from phonebooth.core.errors import FieldError

__all__ = ["format_loc", "translate"]

_TYPE_NAMES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be a boolean",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
    "int_from_float": "must be an integer",
}


def format_loc(loc: Sequence[int | str]) -> str:
    """`("tools", 0, "function", "name")` -> `tools[0].function.name`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: dict[str, Any], under_headers: bool) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind]
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        if under_headers:
            return f"must be one of {expected}"
        return f"{error.get('input')!r} is not one of {expected}"
    if kind == "string_too_short":
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "string_pattern_mismatch":
        return "has characters that are not allowed"
    if kind in {"greater_than_equal", "greater_than"}:
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in {"less_than_equal", "less_than"}:
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind == "value_error":
        message = str(error.get("msg", ""))
        return message.removeprefix("Value error, ")
    if kind == "assertion_error":
        return str(error.get("msg", "")).removeprefix("Assertion failed, ")
    return str(error.get("msg", "is invalid"))


def translate(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[FieldError]:
    """Every pydantic error as a `FieldError`, in the order pydantic reports them."""
    result: list[FieldError] = []
    for error in exc.errors(include_url=False):
        loc = list(prefix) + list(error["loc"])
        under_headers = "headers" in loc
        if error["type"] == "extra_forbidden":
            key = loc.pop() if loc else "?"
            result.append(FieldError(format_loc(loc), f"unknown key {str(key)!r}"))
            continue
        result.append(FieldError(format_loc(loc), _message(dict(error), under_headers)))
    return result
