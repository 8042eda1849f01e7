"""Reading a release's siblings' original metadata in the order that costs the upstream least.

The asked-for wheel may go first (it tells whether the release has unadvertised PEP 658 files), and
one wheel per platform may go ahead of the others (it teaches them where their zips keep METADATA).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from proxy.cache.store import PageKey
from proxy.index.model import DistFile
from proxy.network.metadata_fetch import Fetched, MetadataFetcher, layout_family
from proxy.network.upstream import Upstream

__all__ = ["read_siblings"]


async def read_siblings(
    fetcher: MetadataFetcher,
    key: PageKey,
    siblings: Sequence[DistFile],
    asked: DistFile,
    upstream: Upstream,
    one: Callable[..., Awaitable[Fetched]],
) -> dict[str, bytes]:
    """Every sibling's original metadata, in the order that costs the upstream least."""

    async def data(dist: DistFile, may_probe: bool = True) -> bytes:
        return (await one(dist, may_probe)).data

    others = [d for d in siblings if d is not asked]
    unadvertised = not any(d.core_metadata for d in siblings)
    teaches = fetcher.costly(key) and not fetcher.knows_layout(key, asked)
    if unadvertised and fetcher.probing(key, upstream) and fetcher.probes_doubted(upstream) and not teaches:
        # The route has missed probes and never answered one: the siblings are read with ranges
        # at once, beside the asked wheel (whose probe still tells the route's later melds),
        # not a round trip after it. The seed's first melds waited ~50 ms each for a 404.
        reads = await asyncio.gather(one(asked), *(one(d, False) for d in others))
        return {d.filename: got.data for d, got in zip([asked, *others], reads, strict=True)}
    if unadvertised and (fetcher.probing(key, upstream) or teaches):
        # The asked-for wheel goes first: it tells whether this release has unadvertised PEP 658
        # files (uploads before an index's backfill often have none), so the rest send no
        # probe that would 404 one by one; read with ranges, it tells where its platform's
        # wheels keep METADATA.
        first = await one(asked)
        read = {asked.filename: first.data}
        found = first.probe is not False  # no probe sent: nothing says the others lack the files
        # Teachers pay off only on pages where a read without a layout took several requests.
        teach = not found and fetcher.costly(key)
        read |= await _read_taught(fetcher, key, others, lambda d: data(d, found), teach=teach)
        return read
    return dict(zip((d.filename for d in siblings), await asyncio.gather(*map(data, siblings)), strict=True))


async def _read_taught(
    fetcher: MetadataFetcher,
    key: PageKey,
    wheels: Sequence[DistFile],
    read: Callable[[DistFile], Awaitable[bytes]],
    *,
    teach: bool,
) -> dict[str, bytes]:
    """Every wheel's original metadata, read concurrently: with ``teach``, a platform whose zip
    layout is not known yet sends one wheel ahead, so its other wheels read in one request each
    (a cold meld of numpy: 195 range requests -> 118)."""

    async def family(group: list[DistFile]) -> list[bytes]:
        if teach and not fetcher.knows_layout(key, group[0]):
            head = await read(group[0])
            return [head, *await asyncio.gather(*map(read, group[1:]))]
        return list(await asyncio.gather(*map(read, group)))

    groups: dict[str, list[DistFile]] = {}
    for dist in wheels:
        groups.setdefault(layout_family(dist.filename), []).append(dist)
    results = await asyncio.gather(*map(family, groups.values()))
    return {
        dist.filename: data
        for group, datas in zip(groups.values(), results, strict=True)
        for dist, data in zip(group, datas, strict=True)
    }
