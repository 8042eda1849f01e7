"""Uploads to the fleet's bucket that finish after the client's answer, under the lock they need.

An object made under its ``CacheStore.lock`` (original metadata, a meld, a meld's siblings) is
committed locally and served at once; its upload to the bucket (``SharedTier.publish``, two or three
requests each) runs in a task of its own that holds the lock, and with it the object's fleet lease,
until the upload is done. So a client never waits for the bucket, and a waiter on the lock (another
task, worker or replica) still finds the object committed in the bucket once it gets the lock.
The lock moves to that task whole: the service enters it through an ``AsyncExitStack`` and hands the
stack over (an ``asyncio.Lock``, a flock and a lease's renewal may all be released by another task).

Bounded: past ``limit`` uploads under way, the next one is awaited where it was made (its client
waits, as it did before), so a bucket slower than the clients cannot pile up tasks and locks. Only
``_SENDING`` of them send at once: a bucket is often bound by its request rate (moto is), and a
client's lookups (``SharedTier.pull``, on its path) should not queue behind a burst of uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from proxy.cache.shared import SharedTier

__all__ = ["Pending", "Uploads"]

log = logging.getLogger("wheelmeld")

_LIMIT = 64  # uploads under way at once, each holding one object's lock
_SENDING = 2  # locked sections uploading at once: the bucket answers the clients' lookups first
_DRAIN_SECONDS = 30.0  # at shutdown, what the uploads under way get before they are cancelled


@dataclass(slots=True)
class Pending:
    """What one locked section committed locally and must upload before its lock goes."""

    objects: dict[Path, bytes] = field(default_factory=dict)
    # Looked for in the bucket under the lock and not found there (``SharedTier.publish``'s
    # ``seen_missing``: with leases, nobody can have committed them since).
    missing: set[Path] = field(default_factory=set)

    def add(self, objects: Mapping[Path, bytes], *, seen_missing: bool = False) -> None:
        self.objects.update(objects)
        if seen_missing:
            self.missing.update(objects)


class Uploads:
    """The background uploads of one service; ``aclose`` at shutdown."""

    def __init__(self, shared: SharedTier | None, *, leased: bool, limit: int = _LIMIT) -> None:
        self._shared = shared
        # With fleet leases, a miss seen under the lock stays a miss while the lock is held.
        self._leased = leased
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending = asyncio.Semaphore(_SENDING)
        self._closed = False

    async def finish(self, held: contextlib.AsyncExitStack, pending: Pending) -> None:
        """Upload ``pending`` while ``held`` (the caller's lock) stays held: in the background
        (``held`` is emptied, the task closes what it held), or here when too many are under way."""
        if self._shared is None or not pending.objects:
            return
        if self._closed or len(self._tasks) >= self._limit:
            await self._upload(pending)
            return
        task = asyncio.create_task(self._upload_then_release(held.pop_all(), pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upload_then_release(self, held: contextlib.AsyncExitStack, pending: Pending) -> None:
        async with held:
            try:
                await self._upload(pending)
            except Exception as exc:  # publish logs bucket errors itself; nothing may end a task unseen
                log.warning("shared cache: an upload failed: %s: %s", type(exc).__name__, exc)

    async def _upload(self, pending: Pending) -> None:
        assert self._shared is not None
        shared, leased = self._shared, self._leased
        async with self._sending:
            await asyncio.gather(
                *(
                    shared.publish(path, data, seen_missing=leased and path in pending.missing)
                    for path, data in pending.objects.items()
                )
            )

    async def aclose(self) -> None:
        """Let the uploads under way finish (a while), then cancel the rest: their locks go either
        way, and an object not uploaded stays this replica's (the next one to miss it refetches)."""
        self._closed = True
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=_DRAIN_SECONDS)
        if late:
            log.warning("shared cache: %d upload(s) cut off at shutdown", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)
