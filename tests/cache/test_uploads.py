"""Uploads after the answer (``proxy.service.uploads``): the client's locked section ends before its
object is in the bucket, the lock (and its fleet lease, on a real ``redis-server``) stays held by the
upload, and a replica waiting on the lease finds the object committed once it gets it.

The bucket is an in-memory ``ObjectStore`` whose sidecar PUTs wait on an event: the one part faked,
so the test can hold an upload mid-way (the moto end-to-end tests run the real one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from proxy.cache.leases import LeaseOutcome
from proxy.cache.object_store import ObjectMissing
from proxy.cache.redis_leases import RELEASED_CHANNEL, RedisLeases
from proxy.cache.shared import SharedCounts, SharedKind, SharedTier
from proxy.cache.store import CacheStore, PageKey
from proxy.service.uploads import Pending, Uploads
from tests.support.redis_server import RedisServer
from tests.support.stack import wait_until

KEY = PageKey("simple", ("demo",))
WHEEL = "demo-1.0-py3-none-any.whl"
DATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"


class _GatedObjects:
    """Objects in memory, every request logged; a sidecar's PUT waits for ``gate``."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.log: list[str] = []
        self.gate = asyncio.Event()

    async def get(self, key: str) -> bytes:
        self.log.append(f"GET {key}")
        if key not in self.data:
            raise ObjectMissing(key)
        return self.data[key]

    async def put(self, key: str, data: bytes) -> None:
        if key.endswith(".sha256"):
            await self.gate.wait()
        self.log.append(f"PUT {key}")
        self.data[key] = data

    async def exists(self, key: str) -> bool:
        self.log.append(f"HEAD {key}")
        return key in self.data

    def stream(self, key: str) -> AsyncIterator[bytes]:
        raise NotImplementedError


def _outcomes() -> tuple[Counter[LeaseOutcome], Callable[[LeaseOutcome], None]]:
    seen: Counter[LeaseOutcome] = Counter()
    return seen, lambda outcome: seen.update((outcome,))


def _subscribers(redis_server: RedisServer) -> int:
    return int(dict(redis_server.client().pubsub_numsub(RELEASED_CHANNEL))[RELEASED_CHANNEL.encode()])


async def _answer(store: CacheStore, tier: SharedTier, uploads: Uploads) -> None:
    """What ``MetadataService.original`` does on a cold miss: look in the bucket under the lock,
    keep the object, hand the lock to its upload, answer."""
    path = store.metadata_path(KEY, WHEEL)
    async with contextlib.AsyncExitStack() as held:
        await held.enter_async_context(store.lock("meta:" + str(path), fleet=True))
        assert await tier.pull(path) is None
        store.write_atomic(path, DATA)
        pending = Pending()
        pending.add({path: DATA}, seen_missing=True)
        await uploads.finish(held, pending)


def test_the_answer_goes_before_the_upload_and_a_waiting_replica_finds_it_committed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async def run() -> None:
        objects = _GatedObjects()
        waited, on_outcome = _outcomes()
        leases = [RedisLeases(redis_server.url, ttl=5.0, on_outcome=on_outcome) for _ in range(2)]
        a, b = (CacheStore(tmp_path / name, leases=lease) for name, lease in zip("ab", leases, strict=True))
        tier_a, tier_b = (
            SharedTier(tmp_path / name, objects, SharedCounts())  # type: ignore[arg-type]
            for name in "ab"
        )
        uploads = Uploads(tier_a, leased=True)
        key = tier_a.key(a.metadata_path(KEY, WHEEL))

        await asyncio.wait_for(_answer(a, tier_a, uploads), 10.0)  # answered, the sidecar held back
        assert key + ".sha256" not in objects.data, "the answer did not wait for the upload"

        async def b_asks() -> bytes | None:
            path = b.metadata_path(KEY, WHEEL)
            async with b.lock("meta:" + str(path), fleet=True):
                return await tier_b.pull(path)

        asking = asyncio.create_task(b_asks())
        await asyncio.to_thread(wait_until, lambda: _subscribers(redis_server) == 1, "B waiting", 10.0)
        assert not asking.done(), "the upload holds A's lease"
        objects.gate.set()
        assert await asyncio.wait_for(asking, 10.0) == DATA
        assert waited[LeaseOutcome.WAITED] == 1
        # Seen missing under the lease: uploaded without asking again, two requests, not three.
        assert objects.log == [
            f"GET {key}.sha256",
            f"PUT {key}",
            f"PUT {key}.sha256",
            f"GET {key}.sha256",
            f"GET {key}",
        ]
        assert tier_a.counts.uploads[SharedKind.METADATA] == 1
        await uploads.aclose()
        for lease in leases:
            await lease.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(("leased", "asked"), [(True, False), (False, True)])
def test_only_a_miss_seen_under_a_fleet_lease_is_not_asked_again(
    tmp_path: Path, leased: bool, asked: bool
) -> None:
    """Without leases another replica may commit the object meanwhile: asked, so a duplicate is
    counted (``test_a_second_upload_of_one_object_counts_a_duplicate``)."""

    async def run() -> list[str]:
        objects = _GatedObjects()
        objects.gate.set()
        store = CacheStore(tmp_path)
        tier = SharedTier(tmp_path, objects, SharedCounts())  # type: ignore[arg-type]
        uploads = Uploads(tier, leased=leased)
        await _answer(store, tier, uploads)
        await uploads.aclose()
        return objects.log

    assert any(entry.startswith("HEAD ") for entry in asyncio.run(run())) is asked


def test_uploads_past_the_limit_are_awaited_where_they_were_made(tmp_path: Path) -> None:
    async def run() -> None:
        objects = _GatedObjects()
        store = CacheStore(tmp_path)
        tier = SharedTier(tmp_path, objects, SharedCounts())  # type: ignore[arg-type]
        uploads = Uploads(tier, leased=False, limit=0)
        answering = asyncio.create_task(_answer(store, tier, uploads))
        await asyncio.to_thread(wait_until, lambda: any(e.startswith("HEAD") for e in objects.log), "", 10.0)
        assert not answering.done(), "no room in the background: the client waits for its upload"
        objects.gate.set()
        await asyncio.wait_for(answering, 10.0)
        assert tier.key(store.metadata_path(KEY, WHEEL)) + ".sha256" in objects.data

    asyncio.run(run())
