"""Shapes of API keys and webhook secrets. Pure: randomness comes from `secrets`."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

__all__ = [
    "API_KEY_PATTERN",
    "generate_api_key",
    "generate_webhook_secret",
    "hash_api_key",
    "key_prefix",
    "secret_hint",
]

API_KEY_PATTERN = re.compile(r"^sk_live_[A-Za-z0-9]{32,}$")
_ALPHANUMERIC = string.ascii_letters + string.digits


def generate_api_key() -> str:
    """`sk_live_` + 40 letters and digits (about 238 bits)."""
    return "sk_live_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(40))


def hash_api_key(key: str) -> str:
    """Keys are stored only as SHA-256; a stolen database yields no usable key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:15]


def generate_webhook_secret() -> str:
    """`whsec_` + 32 random bytes in URL-safe base64 without padding (43 characters)."""
    return "whsec_" + secrets.token_urlsafe(32)


def secret_hint(secret: str) -> str:
    return "whsec_…" + secret[-6:]
