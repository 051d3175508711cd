"""Signed, expiring recording URLs (contract 7, "Recording URLs").

The signature is the credential: whoever holds the URL may fetch the WAV until `exp`, with no
API key, so a link can go into a webhook payload or a browser `<audio>` tag. Pure: the key
and the time are passed in.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "RECORDING_URL_TTL",
    "recording_signature",
    "sign_recording_url",
    "verify_recording_signature",
]

RECORDING_URL_TTL = 3600  # seconds; contract 7: "valid for 1 hour"


def recording_signature(call_id: int, exp: int, *, key: bytes) -> str:
    """Hex HMAC-SHA256 over `"{call_id}.{exp}"`: binds the link to one call and one deadline."""
    return hmac.new(key, f"{call_id}.{exp}".encode("ascii"), hashlib.sha256).hexdigest()


def sign_recording_url(
    public_url: str, call_id: int, *, key: bytes, now: int, ttl: int = RECORDING_URL_TTL
) -> str:
    """`{public_url}/recordings/{call_id}.wav?exp=<unix>&sig=<hex>`, valid until `now + ttl`."""
    exp = int(now) + ttl
    sig = recording_signature(call_id, exp, key=key)
    return f"{public_url.rstrip('/')}/recordings/{call_id}.wav?exp={exp}&sig={sig}"


def verify_recording_signature(call_id: int, exp: int, sig: str, *, key: bytes, now: int) -> bool:
    """True while `now <= exp` and `sig` matches; compared in constant time.

    Comparing bytes (not str) keeps a non-ASCII `sig` from a hostile query string a plain
    mismatch instead of a `TypeError`.
    """
    if now > exp:
        return False
    expected = recording_signature(call_id, exp, key=key).encode("ascii")
    return hmac.compare_digest(expected, sig.lower().encode("utf-8", "surrogateescape"))
