"""Fleet-wide leases: the half of ``CacheStore.lock`` that spans machines.

``CacheStore.lock(name)`` excludes the tasks of one process and the worker processes sharing one
disk on its own. Replicas on other machines share no disk, so with ``[coordination] redis_url`` the
lock also holds a *lease* on an engine they share (Redis or Valkey: ``proxy.cache.redis_leases``):
at most one replica fetches an object upstream, the others wait and then find it committed in the
shared store.

A lease expires unless its holder renews it, so a holder that dies (``kill -9``, a lost machine)
frees it within its ttl and another replica takes over. A holder whose lease was lost (a pause
longer than the ttl) still finishes what it writes: every object is written whole or not at all and
is verified against its hash, so the worst a lost lease costs is a second identical fetch; it is
counted. An engine that cannot be reached never stops serving: the lock is then local only, counted
and logged once per outage.
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["LeaseOutcome", "Leases"]


class LeaseOutcome(enum.Enum):
    """What became of one lease (``wheelmeld_lease_total{outcome=...}``)."""

    ACQUIRED = "acquired"  # free: taken at once
    WAITED = "waited"  # another replica held it and released it; taken after
    TAKEN_OVER = "taken_over"  # another replica held it and stopped renewing (died); taken on expiry
    LOST = "lost"  # ours expired or was taken while we held it: our write went ahead regardless
    UNAVAILABLE = "unavailable"  # the engine did not answer: locked on this replica only


class Leases(Protocol):
    """Leases on names shared by every replica of a fleet."""

    def hold(self, name: str) -> AbstractAsyncContextManager[None]:
        """Wait until this replica holds ``name``'s lease, keep it while inside, release it after.

        Never raises for the engine's sake: unreachable, it yields without a lease.
        """
        ...

    async def aclose(self) -> None: ...
