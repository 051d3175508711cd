"""Call-only tokens for the browser page (architecture section 10).

A browser trades an API key once for a token that can do one thing: start a web call to one
number of one organization, for at most 10 minutes. The token is stateless: an HMAC-SHA256
signature over its claims, so any server holding the installation secret can check it and
nothing is stored. Pure: the key and the time are passed in.

Format: `pbw1.<claims>.<signature>`, both parts base64url without padding; the claims are
compact JSON `{"exp": <unix>, "num": "<E.164>", "org": <id>, "typ": "web_call"}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "WEB_CALL_MAX_TTL",
    "TokenError",
    "WebCallGrant",
    "derive_key",
    "mint_web_call_token",
    "verify_web_call_token",
]

WEB_CALL_MAX_TTL = 600  # seconds; architecture section 10: "valid for at most 10 minutes"
_PREFIX = "pbw1"
_TYPE = "web_call"
_MAX_TOKEN_LENGTH = 1024  # far above a real token; refuses junk before any decoding work
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

TokenProblem = Literal["malformed", "signature", "expired"]


class TokenError(ValueError):
    """A token that grants nothing; `problem` says why (for logs, never echoed in detail)."""

    def __init__(self, problem: TokenProblem, detail: str) -> None:
        super().__init__(detail)
        self.problem: TokenProblem = problem
        self.detail = detail


@dataclass(frozen=True)
class WebCallGrant:
    """What a valid token allows: one web call to `to_number` of `org_id` before `expires_at`."""

    org_id: int
    to_number: str
    expires_at: int  # unix seconds


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A subkey for one purpose, so a signature made for one use never verifies for another
    even when the installation keeps a single secret file."""
    return hmac.new(
        secret, b"phonebooth key derivation\x00" + purpose.encode(), hashlib.sha256
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64url: the decoder alone would skip characters outside the alphabet."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(body: str, key: bytes) -> bytes:
    return hmac.new(key, f"{_PREFIX}.{body}".encode("ascii"), hashlib.sha256).digest()


def mint_web_call_token(
    org_id: int, to_number: str, *, key: bytes, now: int, ttl: int = WEB_CALL_MAX_TTL
) -> tuple[str, WebCallGrant]:
    """A token for one web call to `to_number`, valid until `now + ttl` (at most 10 minutes)."""
    if not 0 < ttl <= WEB_CALL_MAX_TTL:
        raise ValueError(f"ttl must be 1 to {WEB_CALL_MAX_TTL} seconds")
    grant = WebCallGrant(org_id=org_id, to_number=to_number, expires_at=int(now) + ttl)
    claims = {"exp": grant.expires_at, "num": to_number, "org": org_id, "typ": _TYPE}
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return f"{_PREFIX}.{body}.{_b64(_sign(body, key))}", grant


def verify_web_call_token(token: str, *, key: bytes, now: int) -> WebCallGrant:
    """The grant of a genuine, unexpired token; `TokenError` otherwise.

    The signature is compared in constant time before the claims are parsed, so nothing an
    attacker writes into the claims is ever interpreted without a valid signature.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise TokenError("malformed", "the token is not a phonebooth web-call token")
    prefix, _, rest = token.partition(".")
    body, _, signature = rest.partition(".")
    if prefix != _PREFIX or not body or not signature or "." in signature:
        raise TokenError("malformed", "the token is not a phonebooth web-call token")
    try:
        given = _unb64(signature)
        _unb64(body)
    except (ValueError, binascii.Error):
        raise TokenError("malformed", "the token is not a phonebooth web-call token") from None
    if not hmac.compare_digest(_sign(body, key), given):
        raise TokenError("signature", "the token's signature does not match")
    grant = _grant(_claims(body))
    if now >= grant.expires_at:
        raise TokenError("expired", "the token has expired")
    if grant.expires_at - now > WEB_CALL_MAX_TTL:
        raise TokenError("expired", "the token claims a lifetime over 10 minutes")
    return grant


def _claims(body: str) -> dict[str, Any]:
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        raise TokenError("malformed", "the token's claims are not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("malformed", "the token's claims are not an object")
    return claims


def _grant(claims: dict[str, Any]) -> WebCallGrant:
    org, number, exp = claims.get("org"), claims.get("num"), claims.get("exp")
    if claims.get("typ") != _TYPE:
        raise TokenError("malformed", "the token is not a web-call token")
    if type(org) is not int or type(exp) is not int or not isinstance(number, str) or not number:
        raise TokenError("malformed", "the token's claims are incomplete")
    return WebCallGrant(org_id=org, to_number=number, expires_at=exp)
