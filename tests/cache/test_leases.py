"""Fleet leases (``proxy.cache.redis_leases``) against a real ``redis-server`` on 127.0.0.1: caches on
different roots exclude each other through one Redis, a renewed lease outlives its ttl, a holder
killed with ``-9`` is taken over within its ttl, compare-and-delete never frees a lease another
replica took over, and an engine that is down leaves locking local, counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.cache.leases import LeaseOutcome
from proxy.cache.redis_leases import KEY_PREFIX, RELEASED_CHANNEL, RETRY_AFTER, RedisLeases
from proxy.cache.store import CacheStore, PageKey
from tests.cache.cachekit import holding_child
from tests.support.fake_index import FakeIndex
from tests.support.redis_server import TEST_PASSWORD as PASSWORD
from tests.support.redis_server import RedisServer
from tests.support.stack import MakeStack, wait_until, wheel

WHEEL = "demo-1.0-py3-none-any.whl"


class _Counted:
    """``on_outcome`` for a test: what became of each lease."""

    def __init__(self) -> None:
        self.outcomes: Counter[LeaseOutcome] = Counter()

    def __call__(self, outcome: LeaseOutcome) -> None:
        self.outcomes[outcome] += 1


def _leases(url: str, ttl: float = 5.0, **options: object) -> tuple[RedisLeases, _Counted]:
    counted = _Counted()
    return RedisLeases(url, ttl=ttl, on_outcome=counted, **options), counted  # type: ignore[arg-type]


async def _until(condition: Callable[[], object], what: str) -> None:
    """``wait_until`` (a deadline, polling) off the event loop, which runs what is awaited."""
    await asyncio.to_thread(wait_until, condition, what, 10.0)


def _subscribers(redis_server: RedisServer) -> int:
    return int(dict(redis_server.client().pubsub_numsub(RELEASED_CHANNEL))[RELEASED_CHANNEL.encode()])


def test_two_caches_on_their_own_roots_exclude_each_other_through_one_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    key = PageKey("simple", ("demo",))

    async def run(leased: bool) -> tuple[int, list[_Counted]]:
        stores, counts = [], []
        for name in ("a", "b"):
            leases, counted = _leases(redis_server.url) if leased else (None, _Counted())
            stores.append(CacheStore(tmp_path / f"{name}-{leased}", leases=leases))
            counts.append(counted)
        inside = most = 0

        async def fetch(store: CacheStore) -> None:
            nonlocal inside, most
            # Each replica names the file by its own path: the fleet must know them as one.
            async with store.lock("file:" + str(store.file_path(key, WHEEL)), fleet=True):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.02)  # the time a download takes, inside the lock
                inside -= 1

        await asyncio.gather(*(fetch(stores[i % 2]) for i in range(8)))
        for store in stores:
            if store.leases is not None:
                await store.leases.aclose()
        return most, counts

    most, counts = asyncio.run(run(leased=True))
    assert most == 1, "one holder at a time across both roots"
    total = sum((c.outcomes for c in counts), Counter())
    # Within a store the local lock queues the tasks: each takes the lease once, after the other's.
    assert total[LeaseOutcome.ACQUIRED] + total[LeaseOutcome.WAITED] == 8
    assert total[LeaseOutcome.WAITED] >= 1, "the two stores really met on the lease"
    assert not total[LeaseOutcome.TAKEN_OVER] and not total[LeaseOutcome.LOST]
    # The control: on their own the two roots overlap, so the test above sees exclusion if it is there.
    assert asyncio.run(run(leased=False))[0] == 2


def test_a_renewed_lease_outlives_its_ttl_and_its_waiter_gets_it_on_release(
    redis_server: RedisServer,
) -> None:
    ttl = 1.0  # renewed every 0.33 s; a shorter one loses its lease on a loaded machine

    async def run() -> None:
        holder, _ = _leases(redis_server.url, ttl)
        waiter, waited = _leases(redis_server.url, ttl)
        got_it = asyncio.Event()

        async def wait_for_it() -> None:
            async with waiter.hold("file:x"):
                got_it.set()

        async with holder.hold("file:x"):
            started = time.monotonic()
            contender = asyncio.create_task(wait_for_it())
            await _until(lambda: holder.renewals >= 4, "four renewals")
            assert time.monotonic() - started > ttl * 1.2, "held past its ttl"
            assert redis_server.client().pttl(KEY_PREFIX + "file:x") > 0
            assert not got_it.is_set(), "nobody else got the lease while it was renewed"
        await asyncio.wait_for(contender, 5)
        assert waited.outcomes == Counter({LeaseOutcome.WAITED: 1})
        await holder.aclose()
        await waiter.aclose()

    asyncio.run(run())


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from proxy.cache.redis_leases import RedisLeases

    async def main():
        leases = RedisLeases(sys.argv[1], ttl=float(sys.argv[2]), on_outcome=lambda outcome: None)
        async with leases.hold("file:x"):
            print("held", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_kill_9_of_the_holder_lets_another_take_over_within_its_ttl(redis_server: RedisServer) -> None:
    ttl = 1.0
    with holding_child(_HOLDER, redis_server.url, str(ttl)):
        pass  # killed (SIGKILL) on leaving: it never releases, it only stops renewing
    killed = time.monotonic()
    assert redis_server.client().exists(KEY_PREFIX + "file:x"), "the dead holder's lease is still there"

    async def take_over() -> Counter[LeaseOutcome]:
        leases, counted = _leases(redis_server.url, ttl)
        async with asyncio.timeout(ttl + 2.0), leases.hold("file:x"):
            pass
        await leases.aclose()
        return counted.outcomes

    assert asyncio.run(take_over()) == Counter({LeaseOutcome.TAKEN_OVER: 1})
    assert time.monotonic() - killed < ttl + 2.0


def test_a_lease_lost_and_taken_over_is_never_freed_by_its_old_holder(redis_server: RedisServer) -> None:
    async def run() -> None:
        old, old_counted = _leases(redis_server.url)
        new, new_counted = _leases(redis_server.url)
        key = KEY_PREFIX + "file:x"
        taken, done = asyncio.Event(), asyncio.Event()

        async def take_over() -> None:
            async with new.hold("file:x"):
                taken.set()
                await done.wait()

        async with old.hold("file:x"):
            contender = asyncio.create_task(take_over())
            # A waiter subscribes to releases once its first try failed.
            await _until(lambda: _subscribers(redis_server) == 1, "the new holder waiting")
            redis_server.client().delete(key)  # as if it expired: the old holder paused past its ttl
            await asyncio.wait_for(taken.wait(), 5)
        # The old holder left; the new one's lease must be untouched.
        assert redis_server.client().get(key) is not None, "the new holder's lease is still there"
        assert old_counted.outcomes[LeaseOutcome.LOST] == 1
        assert new_counted.outcomes == Counter({LeaseOutcome.TAKEN_OVER: 1})
        done.set()
        await asyncio.wait_for(contender, 5)
        assert redis_server.client().get(key) is None, "and its holder freed it"
        await old.aclose()
        await new.aclose()

    asyncio.run(run())


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_with_redis_down_locks_stay_local_counted_and_logged_once(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wheelmeld.coordination")
    clock = _Clock()
    port = redis_server.port
    redis_server.stop()

    async def run() -> Counter[LeaseOutcome]:
        leases, counted = _leases(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", clock=clock)
        store = CacheStore(tmp_path, leases=leases)
        inside = most = 0

        async def fetch() -> None:
            nonlocal inside, most
            async with store.lock("file:x", fleet=True):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(fetch() for _ in range(5)))
        assert most == 1, "the local lock still excludes"
        clock.now += RETRY_AFTER / 2
        await fetch()  # within the pause: Redis is not asked again
        with RedisServer(port=port, password=PASSWORD):
            await fetch()  # still paused: nothing tells the replica yet
            clock.now += RETRY_AFTER
            await fetch()  # asked again: the lease is back
        await leases.aclose()
        return counted.outcomes

    outcomes = asyncio.run(run())
    assert outcomes == Counter({LeaseOutcome.UNAVAILABLE: 7, LeaseOutcome.ACQUIRED: 1})
    lines = [r.getMessage() for r in caplog.records if r.name == "wheelmeld.coordination"]
    assert len(lines) == 2, lines
    assert "does not answer" in lines[0] and "answers again" in lines[1]
    assert all(PASSWORD not in line and ":***@127.0.0.1" in line for line in lines)


def _lease_metrics(text: str) -> dict[str, int]:
    prefix = 'wheelmeld_lease_total{outcome="'
    return {
        line[len(prefix) :].partition('"')[0]: int(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_a_proxy_takes_leases_counts_them_and_never_shows_the_password(
    make_stack: MakeStack, redis_server: RedisServer
) -> None:
    index = FakeIndex.from_files({"demo": [wheel(WHEEL)]})
    s = make_stack(index, config={"redis_url": redis_server.url})
    assert s.client.get("/simple/demo/").status_code == 200
    counts = _lease_metrics(s.client.get("/metrics").text)
    assert set(counts) == {o.value for o in LeaseOutcome}
    assert sum(counts.values()) == 0, "a page is each replica's own: no lease"
    assert s.client.get(f"/simple/demo/{WHEEL}").status_code == 200
    assert _lease_metrics(s.client.get("/metrics").text)["acquired"] == 1, "the file, under a lease"
    status = s.client.get("/").text
    assert PASSWORD not in status and f"redis://:***@127.0.0.1:{redis_server.port}/0" in status

    redis_server.stop()  # the proxy goes on serving, on local locks
    assert s.client.get("/simple/demo/demo-1.0-py3-none-any.whl.metadata").status_code == 200
    assert _lease_metrics(s.client.get("/metrics").text)["unavailable"] >= 1
