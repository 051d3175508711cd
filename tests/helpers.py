"""Test data shared by several test modules."""

from __future__ import annotations

import copy
from typing import Any

from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_api_key, create_organization

SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search_appointments",
        "description": "Find available appointment slots",
        "parameters": {
            "type": "object",
            "properties": {"date": {"type": "string"}},
            "required": ["date"],
        },
    },
    "endpoint": {
        "url": "https://api.example.com/appointments/search",
        "method": "POST",
        "headers": {"X-Api-Key": "your-key"},
    },
}


def agent_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Receptionist",
        "prompt": "You are a friendly receptionist for a dental clinic.",
        "voice": "en-US-Standard-Journey-D",
        "product": "bolt",
        "tools": [copy.deepcopy(SEARCH_TOOL)],
    }
    body.update(overrides)
    return body


async def other_org_key(settings: Settings, role: str = "admin") -> str:
    """Create a second organization directly in the database; return its key."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            org = await create_organization(session, "other")
            _, key = await create_api_key(session, org.id, name="other", role=role)
            await session.commit()
            return key
    finally:
        await db.dispose()
