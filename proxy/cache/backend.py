"""Which backend the configuration names, opened: nothing for ``local``, the bucket for ``s3``.

The S3 client is imported only here and only for ``backend = "s3"``: it is an optional extra
(``pip install 'wheelmeld[s3]'``), and the default install never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from proxy.cache.shared import SharedCounts, SharedTier
from proxy.config import Config
from proxy.errors import ConfigError

__all__ = ["in_bucket", "opened_shared"]

_T = TypeVar("_T")


@contextlib.asynccontextmanager
async def opened_shared(
    config: Config, counts: SharedCounts | None = None
) -> AsyncIterator[SharedTier | None]:
    """The shared tier over ``config``'s bucket while the block runs; ``None`` on the local backend.

    A missing extra or missing credentials are a ``ConfigError`` (one line, no secret in it).
    """
    if config.cache_backend != "s3":
        yield None
        return
    try:
        from proxy.cache.s3 import S3ObjectStore
    except ImportError as exc:
        raise ConfigError(
            f"cache.backend = \"s3\" needs the S3 client: pip install 'wheelmeld[s3]' ({exc.name} is missing)"
        ) from None
    from proxy.cache.object_store import ObjectStoreError

    assert config.s3_bucket is not None  # load_config refuses backend s3 without a bucket
    store = S3ObjectStore(
        config.s3_bucket,
        prefix=config.s3_prefix,
        endpoint_url=config.s3_endpoint_url,
        region=config.s3_region,
    )
    try:
        await store.__aenter__()
    except ObjectStoreError as exc:
        raise ConfigError(f'cache.backend = "s3": {exc}') from None
    try:
        yield SharedTier(config.cache_dir, store, counts or SharedCounts())
    finally:
        await store.__aexit__(None, None, None)


def in_bucket(config: Config, work: Callable[[SharedTier], Awaitable[_T]]) -> _T | None:
    """``work`` run to its end on the fleet's bucket (backend s3), for a command outside the server;
    ``None`` on the local backend. A bucket that is not there or refuses the credentials is a
    ``ConfigError`` naming the bucket, in one line."""
    if config.cache_backend != "s3":
        return None
    from proxy.cache.object_store import ObjectStoreError

    async def run() -> _T:
        async with opened_shared(config) as tier:
            assert tier is not None
            return await work(tier)

    try:
        return asyncio.run(run())
    except ObjectStoreError as exc:
        raise ConfigError(f"the bucket s3://{config.s3_bucket}/{config.s3_prefix}: {exc}") from None
