"""Signing: the contract 2.2 test vectors, wire-form agreement with httpx, and properties."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
import thunderphone
from hypothesis import given
from hypothesis import strategies as st

from phonebooth import __version__
from phonebooth.webhooks.signing import (
    build_headers,
    encode_query_arguments,
    path_and_query,
    serialize,
    sign_v1,
    sign_v2,
    verify_v1,
    verify_v2,
)

SECRET = "whsec_test123"
T = 1767225600
INCOMING = {
    "type": "call.incoming",
    "data": {"call_id": 987654321, "from_number": "+15555550100", "to_number": "+15555550200"},
}
INCOMING_BYTES = (
    b'{"data":{"call_id":987654321,"from_number":"+15555550100",'
    b'"to_number":"+15555550200"},"type":"call.incoming"}'
)


def v2(method: str, url: str, body: bytes, secrets: list[str] | None = None) -> str:
    return sign_v2(
        secrets=secrets or [SECRET],
        timestamp=T,
        method=method,
        path_and_query=path_and_query(url),
        body=body,
    )


# -- contract 2.2 test vectors -----------------------------------------------------------------


def test_incoming_body_bytes() -> None:
    assert serialize(INCOMING) == INCOMING_BYTES


def test_incoming_vectors() -> None:
    assert sign_v1(INCOMING_BYTES, SECRET) == (
        "c9c21f36f51cc944890cb2d73c13efd239acc2a1c6df9c087cb1a8b5edb046c9"
    )
    url = "https://hooks.example.com/thunderphone-webhook?source=prod"
    assert v2("POST", url, INCOMING_BYTES) == (
        "t=1767225600,v1=e9149faffca143a3de4f25791e0df4c7dec3c4d48029ae994fda63eceda32db5"
    )


def test_get_vector() -> None:
    assert v2("GET", "https://api.example.com/tools/lookup?id=7", b"") == (
        "t=1767225600,v1=56b315adaa03cbddbfb8038eb1e1a75685ca0105cac9791847ce990897dead59"
    )


def test_get_vector_with_encoded_arguments() -> None:
    url = encode_query_arguments(
        "https://api.example.com/tools/lookup", {"name": "José García", "id": 7}
    )
    assert url == "https://api.example.com/tools/lookup?id=7&name=Jos%C3%A9%20Garc%C3%ADa"
    assert path_and_query(url) == "/tools/lookup?id=7&name=Jos%C3%A9%20Garc%C3%ADa"
    assert v2("GET", url, b"") == (
        "t=1767225600,v1=b6bac18341b2a05bec7b94a0c3057f7cbe8bc0547919aa2dea3e776099af8253"
    )


def test_no_path_vectors() -> None:
    body = serialize({"date": "2025-01-02"})
    assert body == b'{"date":"2025-01-02"}'
    assert sign_v1(body, SECRET) == (
        "09a94d47cb8b6d9999da2ff49304b11d29bfd871292540173c6916524a7cd49f"
    )
    assert path_and_query("https://api.example.com") == "/"
    assert v2("POST", "https://api.example.com", body) == (
        "t=1767225600,v1=d2a20eb13fb599f0a47dfe6cbe56e7b722ef67c4ce3de6f0c423616ce6a45225"
    )


# -- serialization and URLs --------------------------------------------------------------------


def test_serialize_is_ascii_sorted_compact() -> None:
    assert serialize({"b": "é", "a": [1, None, True]}) == b'{"a":[1,null,true],"b":"\\u00e9"}'


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.example", "/"),
        ("http://a.example?x=1", "/?x=1"),
        ("http://a.example/", "/"),
        ("http://a.example/p?q=a%20b", "/p?q=a%20b"),
        ("http://a.example/%7e?a=%2F&b=%41", "/%7e?a=%2F&b=%41"),  # no re-encoding
        ("http://a.example/p?x=1#frag", "/p?x=1"),
        ("http://u:p@a.example:8080/x;y?z", "/x;y?z"),
        ("http://[::1]:8080/x?y=[1]", "/x?y=[1]"),
        ("http://a.example/p?a=b&&c=", "/p?a=b&&c="),
        ("http://a.example/a b?c d", "/a%20b?c%20d"),  # only what cannot travel raw is escaped
        ("http://a.example/café?n=José", "/caf%C3%A9?n=Jos%C3%A9"),
    ],
)
def test_path_and_query(url: str, expected: str) -> None:
    assert path_and_query(url) == expected


async def test_path_and_query_is_what_httpx_sends() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(204)

    urls = [
        "http://a.example",
        "http://a.example/%7e/x?a=%2F",
        "http://a.example/a b?é=1",
        "http://a.example/p?x=1#f",
    ]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for url in urls:
            await client.get(url)
    assert [s.decode() for s in seen] == [path_and_query(u) for u in urls]


@pytest.mark.parametrize(
    ("url", "arguments", "expected"),
    [
        ("http://x/t", {}, "http://x/t"),
        ("http://x/t", {"b": 1, "a": "z"}, "http://x/t?a=z&b=1"),
        ("http://x/t?k=v", {"a": "1"}, "http://x/t?k=v&a=1"),
        ("http://x/t?", {"a": "1"}, "http://x/t?a=1"),
        ("http://x/t?k=v&", {"a": "1"}, "http://x/t?k=v&a=1"),
        ("http://x/t#frag", {"a": "1"}, "http://x/t?a=1#frag"),
        ("http://x/t", {"q": "a b&c=d/é~-._"}, "http://x/t?q=a%20b%26c%3Dd%2F%C3%A9~-._"),
        ("http://x/t", {"n a": "1"}, "http://x/t?n%20a=1"),
        (
            "http://x/t",
            {"f": 1.5, "t": True, "n": None, "l": [1, "é"], "o": {"k": "v"}},
            "http://x/t?f=1.5&l=%5B1%2C%22%C3%A9%22%5D&n=null&o=%7B%22k%22%3A%22v%22%7D&t=true",
        ),
        ("http://x/t", {"s": "7"}, "http://x/t?s=7"),  # a string stays a string, not "\"7\""
        ("http://x/t", {"s": "\ud800"}, "http://x/t?s=%ED%A0%80"),  # lone surrogate from JSON
    ],
)
def test_encode_query_arguments(url: str, arguments: dict[str, object], expected: str) -> None:
    assert encode_query_arguments(url, arguments) == expected


any_text = st.text(alphabet=st.characters(exclude_categories=()))  # lone surrogates too


@given(st.dictionaries(any_text.filter(bool), any_text | st.integers() | st.booleans()))
def test_encoded_query_uses_only_unreserved_characters(arguments: dict[str, object]) -> None:
    url = encode_query_arguments("http://x/t", arguments)
    query = url.partition("?")[2]
    assert re.fullmatch(r"[A-Za-z0-9\-._~%=&]*", query)
    assert path_and_query(url) == "/t" + ("?" + query if query else "")


# -- headers -----------------------------------------------------------------------------------


def test_build_headers_post() -> None:
    rid, eid = uuid.uuid4(), uuid.uuid4()
    old = "whsec_old"
    headers = build_headers(
        secrets=[SECRET, old],
        method="POST",
        url="https://hooks.example.com/thunderphone-webhook?source=prod",
        body=INCOMING_BYTES,
        timestamp=T,
        request_id=rid,
        event_id=eid,
    )
    expected_v2 = v2(
        "POST", "https://hooks.example.com/thunderphone-webhook?source=prod", INCOMING_BYTES
    )
    assert headers == {
        "Content-Type": "application/json",
        "X-ThunderPhone-Signature": sign_v1(INCOMING_BYTES, SECRET),
        "X-ThunderPhone-Signature-V2": expected_v2
        + ",v1="
        + sign_v2(
            secrets=[old],
            timestamp=T,
            method="POST",
            path_and_query="/thunderphone-webhook?source=prod",
            body=INCOMING_BYTES,
        ).split("v1=")[1],
        "X-ThunderPhone-Request-ID": str(rid),
        "X-ThunderPhone-Event-ID": str(eid),
        "User-Agent": f"phonebooth/{__version__}",
    }


def test_build_headers_get_has_no_content_type_and_fresh_request_ids() -> None:
    def make() -> dict[str, str]:
        return build_headers(
            secrets=[SECRET],
            method="GET",
            url="https://api.example.com/tools/lookup?id=7",
            body=b"",
            timestamp=T,
        )

    first, second = make(), make()
    assert "Content-Type" not in first
    assert "X-ThunderPhone-Event-ID" not in first
    assert first["X-ThunderPhone-Signature-V2"].endswith(
        "56b315adaa03cbddbfb8038eb1e1a75685ca0105cac9791847ce990897dead59"
    )
    assert uuid.UUID(first["X-ThunderPhone-Request-ID"]).version == 4
    assert first["X-ThunderPhone-Request-ID"] != second["X-ThunderPhone-Request-ID"]


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        sign_v2(secrets=[], timestamp=T, method="GET", path_and_query="/", body=b"")


# -- verification ------------------------------------------------------------------------------


def check(header: str | None, **overrides: object) -> bool:
    args: dict[str, object] = {
        "secrets": [SECRET],
        "method": "POST",
        "path": "/thunderphone-webhook?source=prod",
        "body": INCOMING_BYTES,
        "now": T,
    }
    args.update(overrides)
    return verify_v2(header, **args)  # type: ignore[arg-type]


VALID = "t=1767225600,v1=e9149faffca143a3de4f25791e0df4c7dec3c4d48029ae994fda63eceda32db5"


def test_verify_v2_accepts_the_vector() -> None:
    assert check(VALID)
    assert check(VALID.upper().replace("T=", "t=").replace("V1=", "v1="))  # hex case
    assert check(" t=1767225600 , v1=00 , v1=" + VALID.split("v1=")[1])  # any v1 may match
    assert check(VALID + ",v2=future-scheme")
    assert check(VALID, secrets=["whsec_other", SECRET])
    assert check(VALID, method="post")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=1767225600",
        "v1=" + VALID.split("v1=")[1],
        "t=abc," + VALID.split(",")[1],
        "t=-1767225600," + VALID.split(",")[1],
        "t=1767225600,t=1767225600," + VALID.split(",")[1],
        "t=99999999999999999999," + VALID.split(",")[1],
        "t=1767225600,v1=",
        "t=1767225600,v1=é",
        "t=１７６７２２５６００," + VALID.split(",")[1],  # non-ASCII digits
        VALID + ",junk",
    ],
)
def test_verify_v2_rejects_junk(header: str | None) -> None:
    assert not check(header)


def test_verify_v2_binds_everything() -> None:
    assert not check(VALID, secrets=["whsec_other"])
    assert not check(VALID, secrets=[])
    assert not check(VALID, method="PUT")
    assert not check(VALID, path="/thunderphone-webhook?source=test")
    assert not check(VALID, path="/thunderphone-webhook")
    assert not check(VALID, body=INCOMING_BYTES + b" ")
    assert check(VALID, now=T + 300) and check(VALID, now=T - 300)
    assert not check(VALID, now=T + 301) and not check(VALID, now=T - 301)
    assert check(VALID, now=T + 400, tolerance=400)


def test_verify_v1() -> None:
    sig = "c9c21f36f51cc944890cb2d73c13efd239acc2a1c6df9c087cb1a8b5edb046c9"
    assert verify_v1(INCOMING_BYTES, sig, SECRET)
    assert verify_v1(INCOMING_BYTES, sig.upper() + "\n", SECRET)
    assert not verify_v1(INCOMING_BYTES + b"x", sig, SECRET)
    assert not verify_v1(INCOMING_BYTES, sig, "whsec_other")
    assert not verify_v1(INCOMING_BYTES, sig, "test123")  # the prefix is part of the key
    for junk in (None, "", "é", sig[:-1], sig + "0"):
        assert not verify_v1(INCOMING_BYTES, junk, SECRET)


# -- properties --------------------------------------------------------------------------------

secrets_st = st.text(min_size=1).map(lambda s: "whsec_" + s)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])
paths = st.text(alphabet="abc/?=&%0123456789", max_size=30).map(lambda p: "/" + p)
timestamps = st.integers(min_value=0, max_value=2**40)


@given(secrets_st, timestamps, methods, paths, st.binary(), st.integers(-300, 300))
def test_round_trip(secret: str, t: int, method: str, path: str, body: bytes, skew: int) -> None:
    header = sign_v2(secrets=[secret], timestamp=t, method=method, path_and_query=path, body=body)
    kwargs = {"secrets": [secret], "method": method, "path": path, "body": body}
    assert verify_v2(header, now=t + skew, **kwargs)  # type: ignore[arg-type]
    assert verify_v1(body, sign_v1(body, secret), secret)


@given(
    st.lists(secrets_st, min_size=1, max_size=3, unique=True),
    timestamps,
    st.binary(min_size=1),
    st.data(),
)
def test_flipped_byte_fails(secrets: list[str], t: int, body: bytes, data: st.DataObject) -> None:
    header = sign_v2(secrets=secrets, timestamp=t, method="POST", path_and_query="/h", body=body)
    index = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(body)
    tampered[index] ^= 1 << bit
    for secret in secrets:
        assert verify_v2(header, secrets=[secret], method="POST", path="/h", body=body, now=t)
        assert not verify_v2(
            header, secrets=[secret], method="POST", path="/h", body=bytes(tampered), now=t
        )
        assert not verify_v1(bytes(tampered), sign_v1(body, secret), secret)


@given(secrets_st, timestamps, st.integers(301, 10**9), st.booleans())
def test_outside_tolerance_fails(secret: str, t: int, skew: int, late: bool) -> None:
    header = sign_v2(secrets=[secret], timestamp=t, method="GET", path_and_query="/", body=b"")
    now = t + skew if late else t - skew
    assert not verify_v2(header, secrets=[secret], method="GET", path="/", body=b"", now=now)


@given(st.text(max_size=200))
def test_arbitrary_headers_never_raise(header: str) -> None:
    assert verify_v2(header, secrets=[SECRET], method="GET", path="/", body=b"", now=T) in {
        True,
        False,
    }


# -- the official thunderphone client accepts what we send -------------------------------------


@given(
    st.lists(secrets_st, min_size=1, max_size=2, unique=True),
    timestamps,
    methods,
    st.binary(max_size=64),
)
def test_official_client_accepts_our_v2(
    secrets: list[str], t: int, method: str, body: bytes
) -> None:
    url = encode_query_arguments("https://api.example.com/tools/lookup", {"name": "José", "id": 7})
    headers = build_headers(secrets=secrets, method=method, url=url, body=body, timestamp=t)
    header = headers["X-ThunderPhone-Signature-V2"]
    path = path_and_query(url)
    for secret in secrets:  # either side of a rotation verifies with its own secret
        assert thunderphone.verify_signature(
            header, secret=secret, method=method, path=path, body=body, now=t
        )
    assert not thunderphone.verify_signature(
        header, secret="whsec_wrong", method=method, path=path, body=body, now=t
    )


def test_official_client_accepts_the_contract_vectors() -> None:
    assert thunderphone.verify_signature(
        VALID,
        secret=SECRET,
        method="POST",
        path="/thunderphone-webhook?source=prod",
        body=INCOMING_BYTES,
        now=T,
    )
    url = encode_query_arguments(
        "https://api.example.com/tools/lookup", {"name": "José García", "id": 7}
    )
    assert thunderphone.verify_signature(
        v2("GET", url, b""), secret=SECRET, method="GET", path=path_and_query(url), body=b"", now=T
    )
