"""Body serialization and the ThunderPhone signatures (contract 2.2, and the GET query rule of 4.1).

Pure functions: no I/O and no clock reads, so the caller passes the timestamp and every output
can be checked against the contract's test vectors. The bytes signed are exactly the bytes sent,
so the body is serialized here once and handed to the HTTP client as-is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from phonebooth import __version__

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_ID_HEADER",
    "REQUEST_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_V2_HEADER",
    "build_headers",
    "encode_query_arguments",
    "path_and_query",
    "serialize",
    "sign_v1",
    "sign_v2",
    "verify_v1",
    "verify_v2",
]

SIGNATURE_HEADER = "X-ThunderPhone-Signature"
SIGNATURE_V2_HEADER = "X-ThunderPhone-Signature-V2"
REQUEST_ID_HEADER = "X-ThunderPhone-Request-ID"
EVENT_ID_HEADER = "X-ThunderPhone-Event-ID"
DEFAULT_TOLERANCE = 300
_MAX_TIMESTAMP_DIGITS = 15  # keeps abs(now - t) far from float overflow


def serialize(obj: Any) -> bytes:
    """The one wire form of a JSON body: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_v1(body: bytes, secret: str) -> str:
    """`X-ThunderPhone-Signature`: HMAC-SHA256 of the body alone (the `whsec_` prefix is key)."""
    return _hmac_hex(secret, body)


def _v2_digest(secret: str, timestamp: int, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body
    return _hmac_hex(secret, message)


def sign_v2(
    *, secrets: Sequence[str], timestamp: int, method: str, path_and_query: str, body: bytes
) -> str:
    """`X-ThunderPhone-Signature-V2`: `t=<t>,v1=<hex>` with one `v1` per valid secret.

    Binding method, path and time stops a captured request from being replayed elsewhere or later.
    """
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    parts = [f"t={int(timestamp)}"]
    parts += [f"v1={_v2_digest(s, int(timestamp), method, path_and_query, body)}" for s in secrets]
    return ",".join(parts)


def path_and_query(url: str | httpx.URL) -> str:
    """The request target exactly as httpx writes it on the wire (`/` when the URL has no path).

    Taken from httpx's own parse so the signed path can never drift from the sent one: an
    already-encoded URL passes through untouched (`%7e` stays `%7e`), the fragment is dropped,
    and only characters that cannot travel raw (spaces, non-ASCII) are escaped, as httpx does.
    """
    target = url if isinstance(url, httpx.URL) else httpx.URL(url)
    return target.raw_path.decode("ascii")


def _encode_component(value: str) -> str:
    # quote() always keeps A-Za-z0-9 and "_.-~"; safe="" drops "/" so only unreserved remain.
    # surrogatepass: JSON may carry a lone "\ud800" escape, and a tool call must not crash on it.
    return quote(value, safe="", errors="surrogatepass")


def _argument_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_query_arguments(url: str, arguments: Mapping[str, Any]) -> str:
    """A GET/DELETE tool URL: arguments sorted by name, appended after any existing query."""
    if not arguments:
        return url
    query = "&".join(
        f"{_encode_component(name)}={_encode_component(_argument_text(arguments[name]))}"
        for name in sorted(arguments)
    )
    base, hash_mark, fragment = url.partition("#")
    if "?" not in base:
        base += "?" + query
    elif base.endswith(("?", "&")):
        base += query
    else:
        base += "&" + query
    return base + hash_mark + fragment


def build_headers(
    *,
    secrets: Sequence[str],
    method: str,
    url: str | httpx.URL,
    body: bytes,
    timestamp: int,
    request_id: uuid.UUID | None = None,
    event_id: uuid.UUID | str | None = None,
) -> dict[str, str]:
    """The headers phonebooth adds to one attempt; call again for every retry (fresh `t` and id).

    `secrets` is ordered newest first: V1 uses the newest, V2 carries one signature per secret.
    """
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    headers: dict[str, str] = {}
    if body:
        headers["Content-Type"] = "application/json"
    headers[SIGNATURE_HEADER] = sign_v1(body, secrets[0])
    headers[SIGNATURE_V2_HEADER] = sign_v2(
        secrets=secrets,
        timestamp=timestamp,
        method=method,
        path_and_query=path_and_query(url),
        body=body,
    )
    headers[REQUEST_ID_HEADER] = str(request_id or uuid.uuid4())
    if event_id is not None:
        headers[EVENT_ID_HEADER] = str(event_id)
    headers["User-Agent"] = f"phonebooth/{__version__}"
    return headers


def _ascii(value: str) -> bytes | None:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        return None


def _parse_v2(header: str) -> tuple[int, list[bytes]] | None:
    """`t=...,v1=...[,v1=...]` into (t, signatures); None for anything malformed."""
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            return None
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return None
            if len(value) > _MAX_TIMESTAMP_DIGITS:
                return None
            timestamp = int(value)
        elif key == "v1":
            encoded = _ascii(value.lower())
            if encoded:
                signatures.append(encoded)
        # Other keys are ignored so a future scheme can ride alongside v1.
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_v2(
    header: str | None,
    *,
    secrets: Sequence[str],
    method: str,
    path: str,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """True when any `v1` in `header` matches any secret and `|now - t| <= tolerance`.

    Every (secret, signature) pair is compared in constant time, so timing does not reveal
    which one matched or how much of it did. Malformed headers are False, never an exception.
    """
    if not header or not secrets:
        return False
    parsed = _parse_v2(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    if abs(now - timestamp) > tolerance:
        return False
    valid = False
    for secret in secrets:
        expected = _v2_digest(secret, timestamp, method, path, body).encode("ascii")
        for signature in signatures:
            valid |= hmac.compare_digest(expected, signature)
    return valid


def verify_v1(body: bytes, signature: str | None, secret: str) -> bool:
    """True when `signature` is the body's V1 signature; compared in constant time."""
    if not signature:
        return False
    given = _ascii(signature.strip().lower())
    if given is None:
        return False
    return hmac.compare_digest(sign_v1(body, secret).encode("ascii"), given)
