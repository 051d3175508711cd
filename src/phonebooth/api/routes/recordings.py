"""`GET /recordings/{call_id}.wav`: a call's recording behind a signed, expiring link.

No API key here: the signature is the credential (contract 7), so the link can be handed to a
webhook receiver or an `<audio>` element. The signature is checked before the database is
read, so an unsigned request learns nothing about which calls exist.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from phonebooth.api.deps import Session, State
from phonebooth.core.errors import NotFoundError, PermissionDeniedError
from phonebooth.storage import calls as repo

__all__ = ["router"]

router = APIRouter(tags=["recordings"])


def _as_int(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 12:  # digits only: no sign, no "1e9"
        return None
    return int(value)


@router.get("/recordings/{call_id:int}.wav", response_class=FileResponse)
async def get_recording(
    call_id: int,
    state: State,
    session: Session,
    exp: str | None = None,
    sig: str | None = None,
) -> FileResponse:
    """403 for a missing, wrong or expired signature; 404 when the call has no recording."""
    expires = _as_int(exp)
    if expires is None or sig is None or not state.recordings.verify(call_id, expires, sig):
        raise PermissionDeniedError("This recording link is invalid or has expired")
    call = await repo.get_call_any_org(session, call_id)
    path = Path(call.recording_path) if call is not None and call.recording_path else None
    if path is None or not path.is_file():
        raise NotFoundError("This call has no recording")
    return FileResponse(
        path,
        media_type="audio/wav",
        headers={
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="call-{call_id}.wav"',
        },
    )
