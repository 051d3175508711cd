"""Settings from `PHONEBOOTH_*` environment variables. Built by the CLI, passed down explicitly."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phonebooth.core.secrets import API_KEY_PATTERN

__all__ = ["Settings"]


# An origin as browsers send it: scheme, host (a name or a bracketed IPv6 address), port.
_ORIGIN = re.compile(r"^https?://([a-z0-9.\-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def _split_origins(value: str) -> list[str]:
    return [e.strip().rstrip("/").lower() for e in value.split(",") if e.strip()]


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every setting phonebooth reads; the README's table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="PHONEBOOTH_", extra="ignore")

    data_dir: Path = Field(default=Path(".phonebooth"))
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None
    api_key: SecretStr | None = None
    allow_private_urls: bool | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    incoming_timeout: float = Field(default=2.0, gt=0, le=30)
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    max_call_seconds: float = Field(default=1800, gt=0)
    silence_checkin_seconds: float = Field(default=10, gt=0)
    silence_hangup_seconds: float = Field(default=30, gt=0)
    # Recordings (contract 7): `on`/`off` parse as booleans; retention 0 keeps them forever.
    recordings: bool = True
    recording_retention_days: int = Field(default=30, ge=0)
    # LLM (providers/llm/select.py documents the choice rule and the per-provider defaults).
    llm_provider: Literal["openai", "llama_cpp", "none"] | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout: float = Field(default=30.0, gt=0, le=600)
    llm_model_path: str | None = None
    llm_hub_model: str | None = None
    model_spark: str | None = None
    model_bolt: str | None = None
    model_zap: str | None = None
    silence_ms_spark: int = Field(default=400, ge=50, le=10_000)
    silence_ms_bolt: int = Field(default=600, ge=50, le=10_000)
    silence_ms_zap: int = Field(default=900, ge=50, le=10_000)
    # The browser page (architecture section 10): other origins, besides this server's own
    # address, whose pages may open `/v1/web/call`; comma-separated `scheme://host[:port]`.
    allowed_origins: str = ""

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not API_KEY_PATTERN.match(value.get_secret_value()):
            raise ValueError(
                "PHONEBOOTH_API_KEY must be 'sk_live_' followed by at least 32 letters and digits"
            )
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_shape(cls, value: str) -> str:
        for entry in _split_origins(value):
            if not _ORIGIN.match(entry):
                raise ValueError(
                    f"{entry!r} is not an origin: write scheme://host[:port] (http or https, "
                    "no path), entries separated by commas"
                )
        return value

    @property
    def allowed_origin_list(self) -> tuple[str, ...]:
        """PHONEBOOTH_ALLOWED_ORIGINS as lower-case origins, without trailing slashes."""
        return tuple(_split_origins(self.allowed_origins))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'phonebooth.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def private_urls_allowed(self) -> bool:
        """Contract 4.3: default true only when the server listens on loopback alone."""
        if self.allow_private_urls is not None:
            return self.allow_private_urls
        return _is_loopback_host(self.host)

    @property
    def concurrent_call_limit(self) -> int:
        """What the machine can serve: local speech recognition is the costly part.

        With faster-whisper installed a call's turns cost about 0.15 s of a core per second
        of speech, and callers talk at once in bursts: 4 calls per core keep every turn
        real-time. Text-only installations (or cloud engines) allow 100 per core.
        """
        if self.max_concurrent_calls is not None:
            return self.max_concurrent_calls
        cores = os.cpu_count() or 1
        local_stt = importlib.util.find_spec("faster_whisper") is not None
        return (4 if local_stt else 100) * cores

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin-key"
