"""``Leases`` on Redis or Valkey, with the ``redis`` package's asyncio client.

``redis`` (redis-py) is the client the Redis project maintains; Valkey answers the same commands
(``SET NX PX``, ``EVALSHA``, ``PUBLISH``). It is an optional dependency (``pip install
'wheelmeld[coordination]'``), imported only when ``[coordination] redis_url`` is set.

One lease is one key, taken by a set-if-absent with expiry (``SET NX PX`` in a script that also
says who holds it when it is taken); its token is random, so only its taker can renew or free it.
A task renews it every ttl/3 with a compare-and-``PEXPIRE`` script, and it is freed by a
compare-and-``DEL`` script: a plain ``DEL`` would free a lease another replica took over after ours
expired. Freeing also publishes the key's name, so a waiting replica wakes at once instead of at its
next poll, and leaves the freed token beside the key for a ttl, so a waiter that then takes the
lease knows whether its holder let go (``waited``) or died (``taken_over``). Waiters poll with
backoff as well: a holder that died publishes nothing.

An engine that does not answer is skipped for ``RETRY_AFTER`` seconds (so an outage costs one
timeout, not one per request), logged once, and each lock meanwhile is local only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from proxy.cache.leases import LeaseOutcome
from proxy.text import escape_controls, masked_url

__all__ = ["RETRY_AFTER", "RedisLeases"]

log = logging.getLogger("wheelmeld.coordination")

KEY_PREFIX = "wheelmeld:lease:"
RELEASED_CHANNEL = "wheelmeld:lease-released"
_FREED = ":freed"  # beside a lease key: the token of its last holder that let go
RETRY_AFTER = 5.0  # seconds an unreachable engine is left alone before it is asked again
_POLL_FIRST = 0.01
_POLL_MAX = 1.0  # and never more than a quarter of the ttl: a dead holder's lease is taken soon after
_CONNECT_TIMEOUT = 2.0
_OP_TIMEOUT = 5.0

# KEYS: the lease, its freed-token key; ARGV: our token, ttl ms. {1, freed token} or {0, holder}.
_ACQUIRE = """
local holder = redis.call('get', KEYS[1])
if holder then return {0, holder} end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return {1, redis.call('get', KEYS[2]) or ''}
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: the lease, its freed-token key; ARGV: our token, the channel, ttl ms.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('set', KEYS[2], ARGV[1], 'px', ARGV[3])
  redis.call('publish', ARGV[2], KEYS[1])
  return 1
end
return 0
"""

_Failure = (RedisError, OSError)


@dataclass(slots=True)
class _Held:
    key: str
    token: str
    lost: bool = False


@dataclass(slots=True)
class _Outage:
    """Whether the engine is failing, and until when it is left alone."""

    failing: bool = False
    until: float = 0.0


@dataclass(slots=True)
class _Waiters:
    """Per lease key, the events of tasks waiting for it; the listener sets them on a release."""

    by_key: dict[str, set[asyncio.Event]] = field(default_factory=dict)

    @contextlib.contextmanager
    def waiting(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self.by_key.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self.by_key.get(key, set())
            events.discard(event)
            if not events:
                self.by_key.pop(key, None)

    def released(self, key: str) -> None:
        for event in self.by_key.get(key, ()):
            event.set()


class RedisLeases:
    """Leases of ``ttl`` seconds on the engine at ``url``; ``on_outcome`` counts each outcome."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        on_outcome: Callable[[LeaseOutcome], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._where = masked_url(url)
        self._secrets = _secrets_in(url)
        self._ttl_ms = max(1, int(ttl * 1000))
        self._renew_every = ttl / 3
        self._poll_max = min(_POLL_MAX, ttl / 4)
        self._on_outcome = on_outcome
        self._clock = clock
        self._redis = Redis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT, socket_timeout=_OP_TIMEOUT)
        self._take = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._outage = _Outage()
        self._waiters = _Waiters()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.renewals = 0  # renewals that found the lease still ours (tests wait on it)

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        held = await self._acquire(KEY_PREFIX + name)
        if held is None:
            yield
            return
        renewing = asyncio.create_task(self._keep(held))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self._free(held)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    # -- taking, keeping and freeing one lease ------------------------------------------------
    async def _acquire(self, key: str) -> _Held | None:
        """The lease, once ours; ``None`` (counted) when the engine does not answer."""
        if self._clock() < self._outage.until:
            self._on_outcome(LeaseOutcome.UNAVAILABLE)
            return None
        token = secrets.token_hex(16)
        try:
            outcome = await self._take_when_free(key, token)
        except _Failure as exc:
            self._failed(exc)
            self._on_outcome(LeaseOutcome.UNAVAILABLE)
            return None
        except BaseException:
            # Cancelled, perhaps just after the lease became ours: free it rather than leave it
            # to expire while every other replica waits.
            self._background(self._free(_Held(key, token, lost=True)))
            raise
        self._answered()
        self._on_outcome(outcome)
        return _Held(key, token)

    async def _take_when_free(self, key: str, token: str) -> LeaseOutcome:
        delay, holder = _POLL_FIRST, None
        with self._waiters.waiting(key) as released:
            while True:
                taken, seen = await self._take(keys=[key, key + _FREED], args=[token, self._ttl_ms])
                if taken:
                    if holder is None:
                        return LeaseOutcome.ACQUIRED
                    return LeaseOutcome.WAITED if seen == holder else LeaseOutcome.TAKEN_OVER
                if holder is None:
                    await self._listen()  # before the first wait, so a release is heard
                holder = seen
                released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), delay)
                delay = min(delay * 2, self._poll_max)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep(self, held: _Held) -> None:
        """Renew every ttl/3 until cancelled or the lease is found gone."""
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                still_ours = await self._renew(keys=[held.key], args=[held.token, self._ttl_ms])
            except _Failure as exc:
                self._failed(exc)
                continue  # the lease may survive a short outage; the next renewal says
            self._answered()
            if not still_ours:
                self._lost(held)
                return
            self.renewals += 1

    async def _free(self, held: _Held) -> None:
        try:
            freed = await self._release(
                keys=[held.key, held.key + _FREED], args=[held.token, RELEASED_CHANNEL, self._ttl_ms]
            )
        except _Failure as exc:
            self._failed(exc)  # it expires by itself
            return
        if not freed and not held.lost:
            self._lost(held)

    def _lost(self, held: _Held) -> None:
        held.lost = True
        self._on_outcome(LeaseOutcome.LOST)
        log.warning(
            "lease %s expired while held (a pause longer than its ttl?); its write went ahead",
            escape_controls(held.key.removeprefix(KEY_PREFIX)),
        )

    # -- hearing releases ---------------------------------------------------------------------
    async def _listen(self) -> None:
        """Start the one subscription that hears every release, and wait until it is in place."""
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._hear(self._redis.pubsub()))
        if self._listening.is_set():
            return
        # Until it is subscribed, or has failed: without it waiters still poll, only slower to wake.
        subscribed = asyncio.create_task(self._listening.wait())
        await asyncio.wait(
            (subscribed, self._listener), timeout=_CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        subscribed.cancel()

    async def _hear(self, pubsub: PubSub) -> None:
        try:
            async with pubsub:
                await pubsub.subscribe(RELEASED_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self._listening.set()
                    elif message["type"] == "message":
                        self._waiters.released(message["data"].decode())
        except _Failure:
            pass  # waiters poll meanwhile; the next one to wait starts a new subscription
        finally:
            self._listening.clear()

    # -- the engine's health ------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> None:
        self._outage.until = self._clock() + RETRY_AFTER
        if not self._outage.failing:
            self._outage.failing = True
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            for secret in self._secrets:
                reason = reason.replace(secret, "***")
            log.warning(
                "coordination: %s does not answer (%s); locking on this replica only until it does",
                self._where, escape_controls(reason),
            )  # fmt: skip

    def _answered(self) -> None:
        if self._outage.failing:
            self._outage.failing = False
            log.warning("coordination: %s answers again; fleet leases resumed", self._where)


def _secrets_in(url: str) -> tuple[str, ...]:
    """The passwords ``url`` carries, never to be shown even inside an error the client wrote."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return ()
    found = [value for name, value in parse_qsl(parts.query) if name == "password"]
    return tuple(p for p in (password, *found) if p)
