"""The agent configuration (contract section 3): one set of models for webhook answers and the API.

`AgentConfig` is the core; `WebhookAnswer` is exactly the seed's answer (strict, no extra keys);
`AgentWrite` is what the REST API accepts for an agent (adds `name`, `inbound_speak_order`,
`first_message`, and `product` defaults to `spark`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phonebooth.contract.fields import translate
from phonebooth.core.errors import FieldError, ValidationFailed

__all__ = [
    "FORBIDDEN_TOOL_HEADERS",
    "AgentConfig",
    "AgentWrite",
    "FunctionSpec",
    "FunctionTool",
    "Product",
    "ToolEndpoint",
    "WebhookAnswer",
    "parse_agent_write",
    "parse_webhook_answer",
    "redact_tools",
]

Product = Literal["spark", "bolt", "zap"]
BackgroundTrack = Literal["CALL_CENTER"]
SpeakOrder = Literal["agent_first", "caller_first"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

FORBIDDEN_TOOL_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 64
MAX_PROMPT = 32_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_local_refs(node: Any, path: str = "parameters") -> None:
    """Only `#...` references: a schema must never make us fetch anything."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"$ref", "$dynamicRef"} and not (
                isinstance(value, str) and value.startswith("#")
            ):
                raise ValueError(
                    f"only local $ref values (starting with '#') are allowed at {path}"
                )
            _check_local_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _check_local_refs(item, f"{path}[{index}]")


class FunctionSpec(_Strict):
    name: str
    description: str = ""
    parameters: dict[str, Any]
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _TOOL_NAME.match(value):
            raise ValueError("must be 1 to 64 letters, digits, '_' or '-'")
        return value

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("must be a JSON Schema whose top-level type is 'object'")
        _check_local_refs(value)
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise ValueError(
                f"is not a valid JSON Schema: {exc.message}" + (f" (at {where})" if where else "")
            ) from None
        return value


class ToolEndpoint(_Strict):
    url: str
    method: str = "POST"
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an absolute http or https URL")
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            raise ValueError("must be one of GET, POST, PUT, PATCH, DELETE")
        return upper

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            lower = name.lower()
            if lower in FORBIDDEN_TOOL_HEADERS or lower.startswith("x-thunderphone-"):
                raise ValueError(f"header {name!r} is not allowed")
            if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        for name, header_value in value.items():
            if any(ch in header_value for ch in "\r\n\0"):
                raise ValueError(f"header {name!r} has a value with a line break or NUL")
        return value


class FunctionTool(_Strict):
    type: Literal["function"]
    function: FunctionSpec
    endpoint: ToolEndpoint
    timeout: Annotated[float, Field(ge=1, le=60)] = 10.0


class AgentConfig(_Strict):
    """The configuration a call runs with, whatever its source."""

    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]
    voice: Annotated[str, Field(min_length=1)]
    product: Product
    background_track: BackgroundTrack | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] = Field(default_factory=list)

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, value: list[FunctionTool]) -> list[FunctionTool]:
        seen: set[str] = set()
        for tool in value:
            if tool.function.name in seen:
                raise ValueError(f"duplicate function name {tool.function.name!r}")
            seen.add(tool.function.name)
        return value

    def tools_json(self) -> list[dict[str, Any]]:
        return [tool.model_dump(mode="json", exclude_none=True) for tool in self.tools]

    def as_json(self) -> dict[str, Any]:
        """The configuration as stored and reported (not yet redacted)."""
        return {
            "prompt": self.prompt,
            "voice": self.voice,
            "product": self.product,
            "background_track": self.background_track,
            "tools": self.tools_json(),
        }


class WebhookAnswer(AgentConfig):
    """A `call.incoming` answer: exactly the seed's keys (plus `voice_name`, normalized first)."""


class AgentWrite(AgentConfig):
    """An agent as the REST API creates or replaces it."""

    name: Annotated[str, Field(min_length=1, max_length=120)]
    product: Product = "spark"
    inbound_speak_order: SpeakOrder = "agent_first"
    first_message: Annotated[str, Field(min_length=1, max_length=4000)] | None = None


def _normalize_voice_name(data: Any, errors: list[FieldError]) -> Any:
    if not isinstance(data, dict) or "voice_name" not in data:
        return data
    data = dict(data)
    voice_name = data.pop("voice_name")
    if "voice" in data and data["voice"] != voice_name:
        errors.append(FieldError("voice_name", "differs from voice; send one of them"))
    elif "voice" not in data:
        data["voice"] = voice_name
    return data


def _parse(model: type[AgentConfig], data: Any) -> Any:
    errors: list[FieldError] = []
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("", "the answer must be a JSON object")])
    data = _normalize_voice_name(data, errors)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors.extend(translate(exc))
    if errors:
        raise ValidationFailed(errors)
    return parsed


def parse_webhook_answer(data: Any) -> WebhookAnswer:
    """Validate a decoded `call.incoming` answer; raise `ValidationFailed` listing every problem."""
    result: WebhookAnswer = _parse(WebhookAnswer, data)
    return result


def parse_agent_write(data: Any) -> AgentWrite:
    """Validate an agent body of the REST API (create, replace, or a patch merged onto one)."""
    result: AgentWrite = _parse(AgentWrite, data)
    return result


def redact_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool list with every endpoint header value replaced by `***` (names kept)."""
    redacted: list[dict[str, Any]] = []
    for tool in tools:
        copy = dict(tool)
        endpoint = dict(copy.get("endpoint") or {})
        headers = endpoint.get("headers") or {}
        endpoint["headers"] = {name: "***" for name in headers}
        copy["endpoint"] = endpoint
        redacted.append(copy)
    return redacted
