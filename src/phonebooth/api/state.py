"""What the application holds for its lifetime, built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phonebooth.config import Settings
from phonebooth.storage.db import Database

__all__ = ["AppState"]


@dataclass
class AppState:
    settings: Settings
    db: Database
    voices: list[dict[str, Any]] = field(default_factory=list)
