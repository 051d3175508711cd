"""Recording retention (PHONEBOOTH_RECORDING_RETENTION_DAYS): delete WAVs of calls that ended
long ago, at start-up and then daily, so a forgotten server does not keep conversations forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from phonebooth.storage.db import Database
from phonebooth.storage.tables import Call, utcnow
from phonebooth.voice.recording import RECORDINGS_DIR

__all__ = ["RecordingRetention", "purge_old_recordings"]

log = logging.getLogger("phonebooth.calls.retention")

_BATCH = 500
DAY_SECONDS = 86_400.0


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a file we cannot delete must not stop the others
            log.warning("could not delete recording %s: %s", path, exc)


async def _purge_referenced(db: Database, cutoff: datetime) -> list[int]:
    """Recordings the database points at, of calls that ended before `cutoff`."""
    purged: list[int] = []
    while True:
        async with db.session() as session:
            rows = (
                await session.execute(
                    select(Call.id, Call.recording_path)
                    .where(
                        Call.recording_path.is_not(None),
                        Call.end_time.is_not(None),
                        Call.end_time < cutoff,
                    )
                    .order_by(Call.id)
                    .limit(_BATCH)
                )
            ).all()
            if not rows:
                return purged
            # Files first: a crash in between leaves a dangling path, cleared next time,
            # never an unreferenced file.
            await asyncio.to_thread(_unlink_all, [Path(path) for _, path in rows if path])
            ids = [call_id for call_id, _ in rows]
            await session.execute(update(Call).where(Call.id.in_(ids)).values(recording_path=None))
            await session.commit()
        purged.extend(ids)


def _old_wavs(directory: Path, cutoff: datetime) -> dict[int, Path]:
    """`<call_id>.wav` files last written before `cutoff`."""
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    limit = cutoff.timestamp()
    for path in directory.glob("*.wav"):
        with contextlib.suppress(ValueError, OSError):
            if path.stat().st_mtime < limit:
                found[int(path.stem)] = path
    return found


async def _purge_orphans(db: Database, directory: Path, cutoff: datetime) -> int:
    """Old files no call points at (a process that died mid-call never stored the path)."""
    candidates = await asyncio.to_thread(_old_wavs, directory, cutoff)
    if not candidates:
        return 0
    ids = list(candidates)
    kept: set[int] = set()
    async with db.session() as session:
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            result = await session.execute(
                select(Call.id).where(Call.id.in_(batch), Call.recording_path.is_not(None))
            )
            kept.update(result.scalars())
    orphans = [path for call_id, path in candidates.items() if call_id not in kept]
    await asyncio.to_thread(_unlink_all, orphans)
    return len(orphans)


async def purge_old_recordings(
    db: Database, data_dir: Path, *, days: int, now: datetime
) -> list[int]:
    """Delete the recordings of calls that ended more than `days` before `now` and clear their
    `recording_path`; also delete equally old files in `<data_dir>/recordings` that no call
    references. Returns the ids of the calls whose recording was removed."""
    cutoff = now - timedelta(days=days)
    purged = await _purge_referenced(db, cutoff)
    orphans = await _purge_orphans(db, data_dir / RECORDINGS_DIR, cutoff)
    if purged or orphans:
        log.info("retention removed %d recording(s), %d orphan file(s)", len(purged), orphans)
    return purged


class RecordingRetention:
    """The background task the app lifespan runs: purge now, then every `interval` seconds.

    `days == 0` keeps recordings forever (the task does not start).
    """

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        days: int,
        clock: Callable[[], datetime] = utcnow,
        interval: float = DAY_SECONDS,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.days = days
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="recording-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await purge_old_recordings(self.db, self.data_dir, days=self.days, now=self.clock())
            except Exception:  # the next day's run may succeed; the server must keep serving
                log.exception("recording retention failed")
            await asyncio.sleep(self.interval)
