"""The tool runner: executes a model step's function-tool calls against customer endpoints.

Contract section 4: one signed request per tool call and no retries (tools may have side
effects), arguments checked against the tool's schema before anything is sent, the calls of a
step run concurrently, and the model always gets one JSON result per call id, in the order it
asked. Results are shaped and capped here (4.2) so the model, the transcript and the events all
see the same object. The HTTP client is injected: it is the URL-policy client (`make_client`),
which refuses forbidden destinations at send time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from phonebooth.agent.tool_guards import ToolGuards
from phonebooth.contract.agent_config import FunctionTool
from phonebooth.webhooks.sender import send_signed
from phonebooth.webhooks.signing import encode_query_arguments, serialize
from phonebooth.webhooks.url_policy import DnsFailure, UrlNotAllowed

__all__ = [
    "ERROR_BODY_CHARS",
    "MAX_RESULT_BYTES",
    "ToolOutcome",
    "ToolRequest",
    "ToolRunner",
    "parse_arguments",
    "shape_result",
    "truncate_result",
]

MAX_RESULT_BYTES = 6144
ERROR_BODY_CHARS = 500
_MAX_DETAILS = 10
_MAX_DETAIL_CHARS = 300
_MAX_JSON_DEPTH = 100
_QUERY_METHODS = frozenset({"GET", "DELETE"})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

logger = logging.getLogger("phonebooth.agent.tools")


@dataclass(frozen=True)
class ToolRequest:
    """One tool call as the model asked for it; `arguments_json` is the model's raw text."""

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call produced: `result` is exactly what the model (and transcript) gets.

    `arguments` is the parsed arguments, or the raw text when it was not JSON. `sent` says
    whether a request was handed to the network (False when refused before any connection).
    """

    id: str
    name: str
    arguments: Any
    result: Any
    duration_ms: int
    started_at_s: float
    sent: bool


# -- pure helpers ------------------------------------------------------------------------------


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")  # Python's json would accept NaN and Infinity


def _scrub(value: Any, depth: int = 0) -> Any:
    """Replace lone surrogates (from `\\ud800` escapes) with U+FFFD, bounded in depth.

    A lone surrogate cannot be encoded as UTF-8, so it would break the next JSON request to the
    language model; U+FFFD has the same UTF-8 length, so truncation decisions do not move.
    """
    if depth > _MAX_JSON_DEPTH:
        raise _NotJson("nested too deeply")
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_scrub(k, depth + 1): _scrub(v, depth + 1) for k, v in value.items()}
    return value


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _NotJson("nested too deeply") from None


def parse_arguments(text: str) -> tuple[Any, bool]:
    """The model's arguments text as (value, True), or (the raw text, False) when it is not JSON.

    An empty string is `{}`: several models send it for a tool that takes no arguments.
    """
    if not text.strip():
        return {}, True
    try:
        return _loads(text), True
    except ValueError:
        return text, False


def _charset(content_type: str | None) -> str:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'").lower()
            return "utf-8-sig" if name in {"utf-8", "utf8"} else name
    return "utf-8-sig"  # also drops a leading byte-order mark


def _decode(body: bytes, charset: str, errors: str) -> str:
    try:
        return body.decode(charset, errors)
    except LookupError:  # unknown or non-text codec named by the server
        return body.decode("utf-8-sig", errors)


def shape_result(status_code: int, body: bytes, content_type: str | None) -> Any:
    """What the model gets for an HTTP answer (contract 4.2), before the size cap.

    A 2xx body is JSON when it parses as JSON, whatever its Content-Type says: many handlers
    send JSON as `text/html`. The Content-Type's charset is honoured for decoding.
    """
    charset = _charset(content_type)
    if not 200 <= status_code < 300:
        text = _decode(body, charset, "replace")
        return {"error": f"HTTP {status_code}", "body": text[:ERROR_BODY_CHARS]}
    try:
        return _scrub(_loads(_decode(body, charset, "strict")))
    except ValueError:  # not decodable, not JSON, or nested too deeply
        return {"result": _decode(body, charset, "replace")}


def truncate_result(result: Any) -> Any:
    """The 6,144-byte rule: `result` itself, or `{"truncated": true, "result": <prefix>}`.

    The prefix is the first 6,144 bytes of the compact JSON, cut back to a UTF-8 boundary so it
    is still valid text. Never raises on odd input (lone surrogates, NaN).
    """
    compact = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    data = compact.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_RESULT_BYTES:
        return result
    cut = MAX_RESULT_BYTES
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # continuation byte: back off to its lead
        cut -= 1
    return {"truncated": True, "result": data[:cut].decode("utf-8", "surrogatepass")}


# A schema may only use local references; should a remote one slip through, nothing is
# fetched: an empty registry's retrieve hook raises NoSuchResource, so the ref is Unresolvable.
_NO_RETRIEVAL: Registry[Any] = Registry()


def _problems(validator: Draft202012Validator, arguments: Any) -> list[str]:
    """Why the arguments break the schema, each message prefixed by its JSON path."""
    if not isinstance(arguments, dict):
        return ["$: arguments must be a JSON object"]
    try:
        errors = sorted(validator.iter_errors(arguments), key=lambda e: (e.json_path, e.message))
    except (Unresolvable, SchemaError, RecursionError):
        return ["$: the tool's parameters schema cannot be applied to these arguments"]
    details = [f"{error.json_path}: {error.message}" for error in errors[:_MAX_DETAILS]]
    return [d if len(d) <= _MAX_DETAIL_CHARS else d[: _MAX_DETAIL_CHARS - 1] + "…" for d in details]


# -- the runner --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    tool: FunctionTool
    validator: Draft202012Validator


class ToolRunner:
    """Runs tool calls for one call: guards, validation, one signed request each, shaping.

    `secrets` sign every request (newest first, contract 2.2); `clock` gives wall-clock seconds
    for the signature timestamp and `started_at_s`. Durations use a monotonic clock.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        tools: Sequence[FunctionTool],
        call_id: int,
        secrets: Sequence[str],
        clock: Callable[[], float] = time.time,
        guards: ToolGuards | None = None,
    ) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed to sign tool requests")
        self._client = client
        self._tools = {
            tool.function.name: _Prepared(
                tool, Draft202012Validator(tool.function.parameters, registry=_NO_RETRIEVAL)
            )
            for tool in tools
        }
        self._call_id = call_id
        self._secrets = list(secrets)
        self._clock = clock
        self.guards = guards if guards is not None else ToolGuards()
        self._ended = False
        self._abandoned: list[asyncio.Future[list[ToolOutcome]]] = []

    @property
    def ended(self) -> bool:
        return self._ended

    def mark_ended(self) -> None:
        """The call has ended: requests already sent may finish, no new one starts."""
        self._ended = True

    async def run_step(self, requests: Sequence[ToolRequest]) -> list[ToolOutcome]:
        """Run one model step's tool calls concurrently; one outcome per request, in order.

        If the caller stops waiting (its task is cancelled on barge-in or hang-up), requests
        already under way still finish; `drain()` hands their outcomes over for recording.
        """
        parsed = [parse_arguments(request.arguments_json) for request in requests]
        if self._ended:
            admitted = [False] * len(requests)
        else:
            admitted = self.guards.admit(
                [(r.name, a) for r, (a, _) in zip(requests, parsed, strict=True)]
            )
        step = asyncio.gather(
            *(
                self._one(request, arguments, is_json, allowed)
                for request, (arguments, is_json), allowed in zip(
                    requests, parsed, admitted, strict=True
                )
            )
        )
        try:
            return list(await asyncio.shield(step))
        except asyncio.CancelledError:
            self._abandoned.append(step)
            raise

    async def drain(self) -> list[ToolOutcome]:
        """Wait for steps whose caller was cancelled and return their outcomes, in order."""
        outcomes: list[ToolOutcome] = []
        while self._abandoned:
            outcomes.extend(await asyncio.shield(self._abandoned[0]))
            self._abandoned.pop(0)
        return outcomes

    async def _one(
        self, request: ToolRequest, arguments: Any, is_json: bool, admitted: bool
    ) -> ToolOutcome:
        started_at = self._clock()
        began = time.perf_counter()
        result, sent = await self._result(request, arguments, is_json, admitted)
        duration_ms = round((time.perf_counter() - began) * 1000)
        return ToolOutcome(
            request.id,
            request.name,
            arguments,
            truncate_result(result),
            duration_ms,
            started_at,
            sent,
        )

    async def _result(
        self, request: ToolRequest, arguments: Any, is_json: bool, admitted: bool
    ) -> tuple[Any, bool]:
        prepared = self._tools.get(request.name)
        refusal: dict[str, Any] | None = None
        if self._ended:
            refusal = {"error": "call_ended"}
        elif not admitted:
            refusal = {"error": "tool_call_limit"}
        elif prepared is None:
            refusal = {"error": "unknown_tool"}
        else:
            details = (
                _problems(prepared.validator, arguments)
                if is_json
                else ["$: arguments are not valid JSON"]
            )
            if details:
                refusal = {"error": "invalid_arguments", "details": details}
        if refusal is not None or prepared is None:
            logger.info(
                "tool call %s refused: %s",
                request.name,
                refusal and refusal["error"],
                extra={"call_id": self._call_id},
            )
            return refusal, False
        # No await between the `ended` check above and the send.
        return await self._execute(prepared.tool, arguments)

    async def _execute(self, tool: FunctionTool, arguments: dict[str, Any]) -> tuple[Any, bool]:
        """Send the one request; (result before the size cap, whether it went out)."""
        endpoint = tool.endpoint
        if endpoint.method in _QUERY_METHODS:
            url, body = encode_query_arguments(endpoint.url, arguments), b""
        else:
            url, body = endpoint.url, serialize(arguments)
        log_extra = {"call_id": self._call_id}
        try:
            async with asyncio.timeout(tool.timeout):
                exchange = await send_signed(
                    self._client,
                    method=endpoint.method,
                    url=url,
                    body=body,
                    secrets=self._secrets,
                    timestamp=int(self._clock()),
                    extra_headers=endpoint.headers,
                    call_id=self._call_id,
                )
        except UrlNotAllowed as exc:  # its message names only the host and the address
            logger.warning("tool %s: %s", tool.function.name, exc, extra=log_extra)
            return {"error": "url_not_allowed"}, False
        except httpx.InvalidURL:
            logger.warning("tool %s: malformed URL", tool.function.name, extra=log_extra)
            return {"error": "url_not_allowed"}, False
        except (DnsFailure, httpx.ConnectError) as exc:
            logger.info("tool %s unreachable: %s", tool.function.name, _kind(exc), extra=log_extra)
            return {"error": "unreachable"}, False
        except httpx.ConnectTimeout:
            return {"error": "timeout"}, False
        except (TimeoutError, httpx.TimeoutException):
            logger.info("tool %s timed out", tool.function.name, extra=log_extra)
            return {"error": "timeout"}, True
        except (httpx.HTTPError, OSError) as exc:  # reset or closed mid-exchange
            logger.info("tool %s failed: %s", tool.function.name, _kind(exc), extra=log_extra)
            return {"error": "unreachable"}, True
        except Exception:  # a bug must not cost the model its answer for this call id
            logger.exception("tool %s: unexpected failure", tool.function.name, extra=log_extra)
            return {"error": "unreachable"}, True
        logger.info(
            "tool %s %s answered %d in %.0f ms",
            tool.function.name,
            endpoint.method,
            exchange.status_code,
            exchange.latency_ms,
            extra=log_extra,
        )
        content_type = exchange.headers.get("content-type")
        return shape_result(exchange.status_code, exchange.body, content_type), True


def _kind(exc: BaseException) -> str:
    """The exception's class only: messages may carry URLs with customer data in the query."""
    return type(exc).__name__
