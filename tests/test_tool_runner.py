"""The tool runner (contract 4): result shaping tables, and real requests to a local receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import thunderphone
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from phonebooth import __version__
from phonebooth.agent.tool_guards import ToolGuards
from phonebooth.agent.tools import (
    MAX_RESULT_BYTES,
    ToolOutcome,
    ToolRequest,
    ToolRunner,
    parse_arguments,
    shape_result,
    truncate_result,
)
from phonebooth.contract.agent_config import FunctionSpec, FunctionTool, ToolEndpoint
from phonebooth.webhooks.signing import serialize
from phonebooth.webhooks.url_policy import UrlPolicy, make_client
from tests.conftest import free_port
from tests.servers import Behaviour, ScriptedReceiver, json_answer, raw_answer

SECRET = "whsec_test123"
OLD_SECRET = "whsec_previous"
T = 1767225600
OPEN_SCHEMA: dict[str, Any] = {"type": "object"}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# -- parsing the model's arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', ({"a": 1}, True)),
        ("", ({}, True)),  # several models send "" for a tool without parameters
        ("  \n", ({}, True)),
        ("[1, 2]", ([1, 2], True)),
        ('"x"', ("x", True)),
        ("date=tomorrow", ("date=tomorrow", False)),
        ('{"a": 1', ('{"a": 1', False)),
        ('{"a": NaN}', ('{"a": NaN}', False)),  # Python's json would accept it; JSON does not
        ("[" * 100_000, ("[" * 100_000, False)),  # too deep: not a crash
    ],
)
def test_parse_arguments(text: str, expected: tuple[Any, bool]) -> None:
    assert parse_arguments(text) == expected


# -- shaping an answer (4.2) -------------------------------------------------------------------

DEEP = b"[" * 200 + b"]" * 200


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (200, b'{"a": 1}', "application/json", {"a": 1}),
        (200, b'{"a":1}', "text/html; charset=utf-8", {"a": 1}),  # JSON sent as HTML is JSON
        (201, b"[1, 2]", None, [1, 2]),
        (200, b"null", "application/json", None),
        (299, b'"hi"', None, "hi"),
        (200, b'\xef\xbb\xbf{"a": 1}', "application/json", {"a": 1}),  # byte-order mark
        (200, '{"a":"é"}'.encode("latin-1"), "application/json; charset=ISO-8859-1", {"a": "é"}),
        (200, b'{"s":"\\ud800x"}', "application/json", {"s": "\ufffdx"}),  # lone surrogate
        (200, b"booked for 7pm", "text/plain", {"result": "booked for 7pm"}),
        (200, b"", None, {"result": ""}),
        (204, b"", None, {"result": ""}),
        (200, b"   ", None, {"result": "   "}),
        (200, b"NaN", "application/json", {"result": "NaN"}),
        (200, b'{"a": Infinity}', None, {"result": '{"a": Infinity}'}),
        (200, b"\xff\xfeok", "text/plain", {"result": "\ufffd\ufffdok"}),
        (200, "café".encode("latin-1"), 'text/plain; charset="latin-1"', {"result": "café"}),
        (200, b"hi", "text/plain; charset=no-such-codec", {"result": "hi"}),
        (200, b"hi", "text/plain; charset=rot13", {"result": "hi"}),  # not a text encoding
        (200, DEEP, "application/json", {"result": DEEP.decode()}),  # too deep to pass on
        (500, b"database is down", "text/plain", {"error": "HTTP 500", "body": "database is down"}),
        (
            404,
            b'{"detail":"x"}',
            "application/json",
            {"error": "HTTP 404", "body": '{"detail":"x"}'},
        ),
        (302, b"", None, {"error": "HTTP 302", "body": ""}),  # redirects are never followed
        (199, b"", None, {"error": "HTTP 199", "body": ""}),
        (300, b"{}", None, {"error": "HTTP 300", "body": "{}"}),
        (503, b"\xff", None, {"error": "HTTP 503", "body": "\ufffd"}),
        (500, ("é" * 600).encode(), None, {"error": "HTTP 500", "body": "é" * 500}),  # characters
    ],
)
def test_shape_result(status: int, body: bytes, content_type: str | None, expected: Any) -> None:
    assert shape_result(status, body, content_type) == expected


# -- the 6,144-byte rule -----------------------------------------------------------------------

FITS = {"result": "x" * (MAX_RESULT_BYTES - 13)}  # '{"result":"' + '"}' is 13 bytes
ONE_OVER = {"result": "x" * (MAX_RESULT_BYTES - 12)}


@pytest.mark.parametrize(
    "result", [{"a": 1}, None, "short", [1, 2], FITS, {"error": "HTTP 500", "body": "é" * 500}]
)
def test_small_results_pass_unchanged(result: Any) -> None:
    assert truncate_result(result) is result


def test_boundary_is_exclusive() -> None:
    assert len(compact(FITS)) == MAX_RESULT_BYTES
    assert truncate_result(FITS) is FITS
    cut = truncate_result(ONE_OVER)
    assert cut == {"truncated": True, "result": compact(ONE_OVER)[:MAX_RESULT_BYTES].decode()}


@pytest.mark.parametrize(
    ("filler", "expected_bytes"),
    [  # '{"rr":"' is 7 bytes, so characters start at 7 + k * their width
        ("x", 6144),
        ("é", 6143),  # 7 + 2 * 3068 = 6,143: the 2-byte character across 6,144 is dropped
        ("€", 6142),  # 7 + 3 * 2045
        ("😀", 6143),  # 7 + 4 * 1534
    ],
)
def test_cut_on_a_utf8_boundary(filler: str, expected_bytes: int) -> None:
    result = {"rr": filler * 7000}
    cut = truncate_result(result)
    prefix = cut["result"].encode()
    assert cut["truncated"] is True
    assert len(prefix) == expected_bytes
    assert compact(result).startswith(prefix)


def test_size_is_measured_in_utf8_not_escaped_ascii() -> None:
    # 3,000 "é" are 6,000 bytes of UTF-8 (fits) but 18,000 bytes as \u00e9 escapes.
    result = {"r": "é" * 3000}
    assert truncate_result(result) is result


def test_truncate_never_raises_on_a_lone_surrogate() -> None:
    cut = truncate_result({"r": "\ud800" * 3000})
    assert cut["truncated"] is True


json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children, max_size=8)
    ),
    max_leaves=60,
)


@given(json_st | st.text(min_size=2000, max_size=9000))
def test_truncate_properties(result: Any) -> None:
    shaped = truncate_result(result)
    data = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    encoded = data.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_RESULT_BYTES:
        assert shaped is result
    else:
        prefix = shaped["result"].encode("utf-8", "surrogatepass")
        assert shaped["truncated"] is True
        assert MAX_RESULT_BYTES - 3 <= len(prefix) <= MAX_RESULT_BYTES
        assert encoded.startswith(prefix)


# -- the runner against a real receiver --------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(UrlPolicy(allow_private=True), timeout=60) as policy_client:
        yield policy_client


def make_tool(
    url: str,
    *,
    name: str = "lookup",
    method: str = "POST",
    parameters: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> FunctionTool:
    return FunctionTool.model_validate(
        {
            "type": "function",
            "function": {"name": name, "parameters": parameters or OPEN_SCHEMA},
            "endpoint": {"url": url, "method": method, "headers": headers or {}},
            "timeout": timeout,
        }
    )


def make_runner(
    client: httpx.AsyncClient,
    *tools: FunctionTool,
    secrets: tuple[str, ...] = (SECRET,),
    call_id: int = 987654321,
) -> ToolRunner:
    return ToolRunner(client, tools=tools, call_id=call_id, secrets=secrets, clock=lambda: T)


def ask(name: str, arguments: Any, call_id: str = "call_1") -> ToolRequest:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolRequest(call_id, name, text)


async def run_one(runner: ToolRunner, request: ToolRequest) -> ToolOutcome:
    [outcome] = await runner.run_step([request])
    assert outcome.id == request.id and outcome.name == request.name
    return outcome


def echo(delay: float = 0.0) -> Behaviour:
    """Answer `{"echo": <the JSON body>}` after `delay` seconds."""

    async def answer(request: Request) -> Response:
        body = await request.body()
        await asyncio.sleep(delay)
        payload = {"echo": json.loads(body) if body else None}
        return Response(json.dumps(payload), media_type="application/json")

    return answer


async def test_post_sends_exactly_the_arguments_signed_with_both_secrets(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/tools/book", json_answer({"booked": True, "slot": "19:00"}))
    tool = make_tool(url, name="book", headers={"X-Api-Key": "key-123"})
    runner = make_runner(client, tool, secrets=(SECRET, OLD_SECRET))
    arguments = {"party": 2, "date": "2025-01-02", "note": "José"}

    outcome = await run_one(runner, ask("book", arguments))

    assert outcome.result == {"booked": True, "slot": "19:00"}
    assert outcome.arguments == arguments
    assert outcome.sent is True
    assert outcome.started_at_s == T
    assert isinstance(outcome.duration_ms, int) and outcome.duration_ms >= 0
    [got] = receiver.requests
    assert (got.method, got.raw_path) == ("POST", "/tools/book")
    assert got.body == serialize(arguments)
    assert got.body == b'{"date":"2025-01-02","note":"Jos\\u00e9","party":2}'
    headers = got.headers
    assert headers["x-api-key"] == "key-123"
    assert headers["content-type"] == "application/json"
    assert headers["x-thunderphone-call-id"] == "987654321"
    assert uuid.UUID(headers["x-thunderphone-request-id"]).version == 4
    assert headers["user-agent"] == f"phonebooth/{__version__}"
    v1 = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert headers["x-thunderphone-signature"] == v1
    v2 = headers["x-thunderphone-signature-v2"]
    assert v2.startswith(f"t={T},") and v2.count("v1=") == 2
    for secret in (SECRET, OLD_SECRET, [OLD_SECRET, SECRET]):
        assert thunderphone.verify_signature(
            v2, secret=secret, method="POST", path=got.raw_path, body=got.body, now=T
        )
    assert not thunderphone.verify_signature(
        v2, secret="whsec_other", method="POST", path=got.raw_path, body=got.body, now=T
    )


async def test_post_to_a_url_without_path_matches_the_contract_vector(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    receiver.on("/", json_answer({"ok": True}))
    runner = make_runner(client, make_tool(receiver.url("")))
    outcome = await run_one(runner, ask("lookup", {"date": "2025-01-02"}))
    assert outcome.result == {"ok": True}
    [got] = receiver.requests
    assert got.raw_path == "/"
    assert got.body == b'{"date":"2025-01-02"}'
    assert got.headers["x-thunderphone-signature"] == (
        "09a94d47cb8b6d9999da2ff49304b11d29bfd871292540173c6916524a7cd49f"
    )
    assert got.headers["x-thunderphone-signature-v2"] == (
        "t=1767225600,v1=d2a20eb13fb599f0a47dfe6cbe56e7b722ef67c4ce3de6f0c423616ce6a45225"
    )


@pytest.mark.parametrize("method", ["PUT", "PATCH", "post"])
async def test_other_body_methods(
    receiver: ScriptedReceiver, client: httpx.AsyncClient, method: str
) -> None:
    url = receiver.on("/tools/item", echo())
    runner = make_runner(client, make_tool(url, method=method))
    outcome = await run_one(runner, ask("lookup", {"id": 7}))
    assert outcome.result == {"echo": {"id": 7}}
    [got] = receiver.requests
    assert got.method == method.upper()
    assert got.body == b'{"id":7}'
    assert got.headers["content-type"] == "application/json"


async def test_get_puts_the_arguments_in_the_query(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/tools/lookup", json_answer({"found": 1}))
    runner = make_runner(client, make_tool(url, method="GET"))
    outcome = await run_one(runner, ask("lookup", {"name": "José García", "id": 7}))
    assert outcome.result == {"found": 1}
    [got] = receiver.requests
    assert got.method == "GET"
    assert got.raw_path == "/tools/lookup?id=7&name=Jos%C3%A9%20Garc%C3%ADa"
    assert got.body == b""
    assert "content-type" not in got.headers
    v2 = got.headers["x-thunderphone-signature-v2"]
    assert v2 == "t=1767225600,v1=b6bac18341b2a05bec7b94a0c3057f7cbe8bc0547919aa2dea3e776099af8253"
    assert thunderphone.verify_signature(
        v2, secret=SECRET, method="GET", path=got.raw_path, body=b"", now=T
    )


async def test_get_keeps_the_urls_own_query_first(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/tools/lookup", json_answer({}))
    runner = make_runner(client, make_tool(url + "?source=prod", method="get"))
    await run_one(runner, ask("lookup", {"id": 7, "tags": ["a", "b"]}))
    [got] = receiver.requests
    assert got.raw_path == "/tools/lookup?source=prod&id=7&tags=%5B%22a%22%2C%22b%22%5D"


async def test_delete_sends_no_body(receiver: ScriptedReceiver, client: httpx.AsyncClient) -> None:
    url = receiver.on("/tools/item", raw_answer(b"", status=204))
    runner = make_runner(client, make_tool(url, method="DELETE"))
    outcome = await run_one(runner, ask("lookup", {"id": 7}))
    assert outcome.result == {"result": ""}
    [got] = receiver.requests
    assert (got.method, got.raw_path, got.body) == ("DELETE", "/tools/item?id=7", b"")
    assert "content-type" not in got.headers
    path, body = got.raw_path, got.body
    v2 = got.headers["x-thunderphone-signature-v2"]
    assert thunderphone.verify_signature(
        v2, secret=SECRET, method="DELETE", path=path, body=body, now=T
    )


async def test_our_headers_win_over_endpoint_headers(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/t", json_answer({}))
    headers = {"User-Agent": "custom", "content-type": "text/plain", "Authorization": "Bearer z"}
    runner = make_runner(client, make_tool(url, headers=headers))
    await run_one(runner, ask("lookup", {}))
    [got] = receiver.requests
    assert got.headers["user-agent"] == f"phonebooth/{__version__}"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer z"
    assert got.body == b"{}"


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (
            raw_answer(b"database is down", status=500),
            {"error": "HTTP 500", "body": "database is down"},
        ),
        (raw_answer(b"x" * 900, status=502), {"error": "HTTP 502", "body": "x" * 500}),
        (
            raw_answer(b"", status=302, headers={"Location": "/elsewhere"}),
            {"error": "HTTP 302", "body": ""},
        ),
        (raw_answer(b"Table for 2 at 7pm"), {"result": "Table for 2 at 7pm"}),
    ],
)
async def test_answers_are_shaped(
    receiver: ScriptedReceiver, client: httpx.AsyncClient, behaviour: Behaviour, expected: Any
) -> None:
    url = receiver.on("/t", behaviour)
    outcome = await run_one(make_runner(client, make_tool(url)), ask("lookup", {}))
    assert outcome.result == expected
    assert outcome.sent is True
    assert len(receiver.requests) == 1  # no retry, no redirect followed


async def test_a_slow_tool_times_out_at_its_timeout(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/slow", raw_answer(b"{}", delay=2.5))
    runner = make_runner(client, make_tool(url, timeout=1))
    began = time.monotonic()
    outcome = await run_one(runner, ask("lookup", {}))
    elapsed = time.monotonic() - began
    assert outcome.result == {"error": "timeout"}
    assert outcome.sent is True
    assert 0.9 <= elapsed < 2.0
    assert 900 <= outcome.duration_ms < 2000


async def test_a_big_answer_is_truncated_to_6144_bytes(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    answer = {"rows": [{"id": i, "name": f"Customer número {i}"} for i in range(1500)]}
    url = receiver.on("/big", json_answer(answer))
    outcome = await run_one(make_runner(client, make_tool(url)), ask("lookup", {}))
    assert len(json.dumps(answer)) > 50_000
    assert outcome.result["truncated"] is True
    prefix = outcome.result["result"].encode()
    assert len(prefix) == MAX_RESULT_BYTES
    assert compact(answer).startswith(prefix)


async def test_metadata_address_is_refused_and_nothing_is_sent(client: httpx.AsyncClient) -> None:
    tool = make_tool("http://169.254.169.254/latest/meta-data/")
    outcome = await run_one(make_runner(client, tool), ask("lookup", {}))
    assert outcome.result == {"error": "url_not_allowed"}
    assert outcome.sent is False


async def test_private_address_refused_when_private_urls_are_off(
    receiver: ScriptedReceiver,
) -> None:
    url = receiver.on("/t", json_answer({}))
    async with make_client(UrlPolicy(allow_private=False), timeout=60) as strict_client:
        outcome = await run_one(make_runner(strict_client, make_tool(url)), ask("lookup", {}))
    assert outcome.result == {"error": "url_not_allowed"}
    assert outcome.sent is False
    assert receiver.requests == []


async def test_connection_refused_is_unreachable(client: httpx.AsyncClient) -> None:
    tool = make_tool(f"http://127.0.0.1:{free_port()}/t")
    outcome = await run_one(make_runner(client, tool), ask("lookup", {}))
    assert outcome.result == {"error": "unreachable"}
    assert outcome.sent is False


async def test_unresolvable_host_is_unreachable() -> None:
    async def no_such_host(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    policy = UrlPolicy(allow_private=True, resolver=no_such_host)
    async with make_client(policy, timeout=60) as dns_client:
        tool = make_tool("https://tools.invalid/t")
        outcome = await run_one(make_runner(dns_client, tool), ask("lookup", {}))
    assert outcome.result == {"error": "unreachable"}
    assert outcome.sent is False


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "date": {"type": "string"},
        "party": {"type": "integer", "minimum": 1},
        "guest": {"$ref": "#/$defs/guest"},
    },
    "required": ["date"],
    "additionalProperties": False,
    "$defs": {"guest": {"type": "object", "properties": {"name": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    ("arguments", "details"),
    [
        (
            {"party": 0, "x": 1, "guest": {"name": 5}},
            [
                "$: 'date' is a required property",
                "$: Additional properties are not allowed ('x' was unexpected)",
                "$.guest.name: 5 is not of type 'string'",
                "$.party: 0 is less than the minimum of 1",
            ],
        ),
        ({"date": 20250102}, ["$.date: 20250102 is not of type 'string'"]),
        ("[1, 2]", ["$: arguments must be a JSON object"]),
        ("date=tomorrow", ["$: arguments are not valid JSON"]),
        ("", ["$: 'date' is a required property"]),
    ],
)
async def test_invalid_arguments_are_not_sent(
    receiver: ScriptedReceiver, client: httpx.AsyncClient, arguments: Any, details: list[str]
) -> None:
    url = receiver.on("/t", json_answer({}))
    runner = make_runner(client, make_tool(url, parameters=SCHEMA))
    outcome = await run_one(runner, ask("lookup", arguments))
    assert outcome.result == {"error": "invalid_arguments", "details": details}
    assert outcome.sent is False
    assert receiver.requests == []


async def test_valid_arguments_with_a_local_ref_are_sent(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    url = receiver.on("/t", echo())
    runner = make_runner(client, make_tool(url, parameters=SCHEMA))
    arguments = {"date": "2025-01-02", "guest": {"name": "Ana"}}
    outcome = await run_one(runner, ask("lookup", arguments))
    assert outcome.result == {"echo": arguments}


async def test_a_remote_ref_is_never_fetched(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    # The configuration check refuses remote $refs; the runner must not fetch one regardless.
    schema_url = receiver.on("/schema.json", json_answer({"type": "string"}))
    spec = FunctionSpec.model_construct(
        name="lookup",
        description="",
        parameters={"type": "object", "properties": {"a": {"$ref": schema_url}}},
        strict=None,
    )
    tool = FunctionTool.model_construct(
        type="function",
        function=spec,
        endpoint=ToolEndpoint(url=receiver.url("/t")),
        timeout=10.0,
    )
    outcome = await run_one(make_runner(client, tool), ask("lookup", {"a": 1}))
    assert outcome.result == {
        "error": "invalid_arguments",
        "details": ["$: the tool's parameters schema cannot be applied to these arguments"],
    }
    assert receiver.requests == []


async def test_an_empty_step(client: httpx.AsyncClient) -> None:
    assert await make_runner(client).run_step([]) == []


async def test_unknown_tool(receiver: ScriptedReceiver, client: httpx.AsyncClient) -> None:
    runner = make_runner(client, make_tool(receiver.url("/t")))
    outcome = await run_one(runner, ask("transfer_call", {}))
    assert outcome.result == {"error": "unknown_tool"}
    assert outcome.sent is False
    assert receiver.requests == []


async def test_a_step_runs_concurrently_and_answers_in_request_order(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    delays = {"/a": 0.8, "/b": 0.5, "/c": 0.2}  # the first asked finishes last
    tools = [make_tool(receiver.on(path, echo(d)), name=path[1:]) for path, d in delays.items()]
    runner = make_runner(client, *tools)
    requests = [ask(path[1:], {"n": i}, f"call_{i}") for i, path in enumerate(delays)]
    began = time.monotonic()
    outcomes = await runner.run_step(requests)
    elapsed = time.monotonic() - began
    assert [o.id for o in outcomes] == ["call_0", "call_1", "call_2"]
    assert [o.result for o in outcomes] == [{"echo": {"n": i}} for i in range(3)]
    assert 0.8 <= elapsed < 1.3  # sequential would take 1.5 s


async def test_nine_calls_in_one_step(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    runner = make_runner(client, make_tool(receiver.on("/t", echo())))
    outcomes = await runner.run_step([ask("lookup", {"n": i}, f"c{i}") for i in range(9)])
    assert [o.id for o in outcomes] == [f"c{i}" for i in range(9)]
    assert [o.result for o in outcomes[:8]] == [{"echo": {"n": i}} for i in range(8)]
    assert outcomes[8].result == {"error": "tool_call_limit"}
    assert outcomes[8].sent is False
    assert len(receiver.requests) == 8


async def test_same_call_a_fourth_time(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    runner = make_runner(client, make_tool(receiver.on("/t", echo())))
    first = await runner.run_step([ask("lookup", {"a": 1, "b": 2}, f"c{i}") for i in (1, 2)])
    second = await runner.run_step(
        [ask("lookup", '{"b": 2, "a": 1}', "c3"), ask("lookup", {"a": 1, "b": 2}, "c4")]
    )
    assert [o.result for o in first + second] == [{"echo": {"a": 1, "b": 2}}] * 3 + [
        {"error": "tool_call_limit"}
    ]
    assert len(receiver.requests) == 3


async def test_guards_can_be_shared_with_the_turn_loop(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    guards = ToolGuards()
    guards.admit([("lookup", {})] * 3)
    runner = ToolRunner(
        client, tools=[make_tool(receiver.url("/t"))], call_id=1, secrets=[SECRET], guards=guards
    )
    assert runner.guards is guards
    outcome = await run_one(runner, ask("lookup", {}))
    assert outcome.result == {"error": "tool_call_limit"}


async def test_nothing_starts_after_the_call_ended(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    runner = make_runner(client, make_tool(receiver.on("/t", echo())))
    runner.mark_ended()
    assert runner.ended
    outcomes = await runner.run_step([ask("lookup", {}, "c1"), ask("nope", {}, "c2")])
    assert [o.result for o in outcomes] == [{"error": "call_ended"}] * 2
    assert not any(o.sent for o in outcomes)
    assert receiver.requests == []
    assert runner.guards.total == 0


async def test_a_request_already_sent_finishes_after_the_call_ended(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    runner = make_runner(client, make_tool(receiver.on("/t", echo(0.4))))
    step = asyncio.create_task(runner.run_step([ask("lookup", {"n": 1})]))
    await asyncio.sleep(0.15)
    runner.mark_ended()
    [outcome] = await step
    assert outcome.result == {"echo": {"n": 1}}
    assert outcome.sent is True


async def test_a_cancelled_step_still_finishes_and_can_be_drained(
    receiver: ScriptedReceiver, client: httpx.AsyncClient
) -> None:
    runner = make_runner(client, make_tool(receiver.on("/t", echo(0.4))))
    step = asyncio.create_task(runner.run_step([ask("lookup", {"n": 1}, "c1")]))
    await asyncio.sleep(0.15)
    step.cancel()  # the caller barged in: the turn loop stops waiting
    with pytest.raises(asyncio.CancelledError):
        await step
    [outcome] = await runner.drain()
    assert (outcome.id, outcome.result, outcome.sent) == ("c1", {"echo": {"n": 1}}, True)
    assert len(receiver.requests) == 1
    assert await runner.drain() == []


async def test_logs_carry_the_call_id_and_never_header_values_or_secrets(
    receiver: ScriptedReceiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    tools = [
        make_tool(receiver.on("/t", json_answer({})), headers={"X-Api-Key": "key-s3cr3t"}),
        make_tool(receiver.on("/e", raw_answer(b"no", status=500)), name="e"),
        make_tool("http://169.254.169.254/", name="m", headers={"X-Api-Key": "key-s3cr3t"}),
    ]
    runner = make_runner(client, *tools, call_id=42)
    with caplog.at_level(logging.DEBUG, logger="phonebooth.agent.tools"):
        await runner.run_step(
            [ask("lookup", {}), ask("e", {}), ask("m", {}), ask("zz", {}), ask("lookup", "[")]
        )
    records = [r for r in caplog.records if r.name == "phonebooth.agent.tools"]
    assert len(records) >= 5
    for record in records:
        assert getattr(record, "call_id", None) == 42
        text = record.getMessage()
        assert "key-s3cr3t" not in text and SECRET not in text


async def test_a_runner_needs_a_secret(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError):
        ToolRunner(client, tools=[], call_id=1, secrets=[])
