"""Engine compute off the event loop, in one bounded pool shared by the app's engines."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["EngineCompute", "default_compute_workers"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def default_compute_workers() -> int:
    """One engine call per core: more threads only make each inference slower."""
    return max(1, os.cpu_count() or 1)


class EngineCompute:
    """Gives an engine `_run_blocking`: the pool passed in (shared), or one of its own that
    it creates on first use and releases in `_release_pool()`."""

    name: str
    compute_kind = "engine"  # names the pool's threads: phonebooth-<kind>-<engine>

    def __init__(self, *, executor: Executor | None, max_workers: int | None) -> None:
        self._executor = executor
        self._owns_executor = executor is None
        self._max_workers = max_workers or default_compute_workers()

    def _pool(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers,
                thread_name_prefix=f"phonebooth-{self.compute_kind}-{self.name}",
            )
        return self._executor

    async def _run_blocking(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run engine compute in the bounded pool so the event loop keeps serving 20 ms frames."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), functools.partial(fn, *args, **kwargs))

    def _release_pool(self) -> None:
        """Shut down the pool this engine created (never one that was passed in)."""
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
