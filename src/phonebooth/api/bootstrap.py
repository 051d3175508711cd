"""First start: migrations, the default organization and its first admin key."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import count_keys, create_api_key, create_organization
from phonebooth.storage.orgs import default_organization as find_default_organization

__all__ = ["BootstrapResult", "prepare_installation", "write_key_file"]

log = logging.getLogger("phonebooth.bootstrap")


@dataclass(frozen=True)
class BootstrapResult:
    org_id: int
    created_org: bool
    created_key: str | None
    key_file: Path | None


def write_key_file(path: Path, key: str) -> None:
    """Write the key readable by its owner only (0600), never widening an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key + "\n").encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


async def prepare_installation(settings: Settings, db: Database) -> BootstrapResult:
    """Idempotent: upgrade the schema; on an empty installation create org and admin key."""
    await db.upgrade()
    async with db.session() as session:
        org = await find_default_organization(session)
        created_org = org is None
        if org is None:
            org = await create_organization(session, "default")
        created_key: str | None = None
        key_file: Path | None = None
        if await count_keys(session) == 0:
            given = settings.api_key.get_secret_value() if settings.api_key else None
            _, created_key = await create_api_key(
                session, org.id, name="bootstrap admin", role="admin", key=given
            )
            if given is None:
                key_file = settings.admin_key_path
                write_key_file(key_file, created_key)
        await session.commit()
        return BootstrapResult(org.id, created_org, created_key, key_file)
