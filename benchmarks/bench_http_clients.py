"""Benchmark (opt-in, the real default index): CPU per range request, httpx against aiohttp.

A cold meld reads every sibling's METADATA with range requests; on an index without core-metadata
hashes a cold ``uv lock`` of workload (a) makes ~600 of them, and the HTTP client's CPU per request
is the largest share of the proxy's CPU (``profile_hot.py --cold-lock``). This measures that cost
alone: 60 suffix ranges of 32 KiB of one release's wheels, 32 at once over a warm pool, for httpx over
HTTP/2 (what wheelmeld uses for everything but wheels' range reads), httpx over HTTP/1.1, and
aiohttp (HTTP/1.1, C parser: what it uses for those reads, ``proxy/network/range_client.py``).
Run: ``.venv/bin/python benchmarks/bench_http_clients.py``.

``--fetches``: CPU per page GET and per small GET through wheelmeld's own ``Upstream.fetch_page`` /
``fetch_small`` (policy, credentials rule, decoding and caps included) for each ``range_client``
(``httpx`` over HTTP/2 where upstream offers it, ``aiohttp``), one at a time so each number is one
request's cost: ``--upstream fake`` (the default) against ``_upstream.py --page-sizes`` (a JSON
page of ``--page-files`` files, HTTP/1.1 only), ``--upstream live`` against the default index
(the pages of workload (a) and PEP 658 files of one of its releases).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from packaging.utils import parse_wheel_filename
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _harness
from proxy.config import RouteConfig
from proxy.default_index import discover_default_index
from proxy.network.upstream import Upstream
from proxy.observe import Metrics

__all__ = ["main"]

_JSON = "application/vnd.pypi.simple.v1+json"
_RANGE = {"Range": "bytes=-32768", "Accept-Encoding": "identity"}


async def _cpu_per_request(get: Callable[[str], Awaitable[int]], urls: list[str], rounds: int) -> list[float]:
    await asyncio.gather(*(get(u) for u in urls[:32]))  # fill the pool: connections are not measured
    per_request = []
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(get(u) for u in urls))
        per_request.append((time.process_time() - started) / len(urls) * 1000)
    return per_request


async def _httpx(urls: list[str], rounds: int, http2: bool) -> list[float]:
    async with httpx.AsyncClient(http2=http2, limits=httpx.Limits(max_connections=32), timeout=30) as client:

        async def get(url: str) -> int:
            return len((await client.get(url, headers=_RANGE)).content)

        return await _cpu_per_request(get, urls, rounds)


async def _aiohttp(urls: list[str], rounds: int) -> list[float] | None:
    try:
        import aiohttp
    except ImportError:
        return None
    connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> int:
            async with session.get(url, headers=_RANGE) as response:
                return len(await response.read())

        return await _cpu_per_request(get, urls, rounds)


async def _run(args: argparse.Namespace) -> None:
    index = discover_default_index().url.rstrip("/")
    async with httpx.AsyncClient(http2=True, timeout=30) as client:
        page = (await client.get(f"{index}/{args.project}/", headers={"Accept": _JSON})).json()
    releases: dict[Version, list[str]] = {}
    for entry in page["files"]:
        if entry["filename"].endswith(".whl"):
            releases.setdefault(parse_wheel_filename(entry["filename"])[1], []).append(entry["url"])
    version = max(releases)
    urls = releases[version][: args.requests]
    rows = {
        "httpx, HTTP/2 (wheelmeld's)": await _httpx(urls, args.rounds, http2=True),
        "httpx, HTTP/1.1": await _httpx(urls, args.rounds, http2=False),
        "aiohttp, HTTP/1.1": await _aiohttp(urls, args.rounds),
    }
    print(f"\n### CPU per 32 KiB range request, {len(urls)} wheels of {args.project} {version}, 32 at once\n")
    print("| client | ms of CPU per request, median (all rounds) |")
    print("|---|---|")
    for name, values in rows.items():
        if values is None:
            print(f"| {name} | not installed in this interpreter |")
        else:
            print(f"| {name} | {statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)}) |")


_WORKLOAD_A = ("requests", "numpy", "pandas", "fastapi", "httpx", "pydantic", "sqlalchemy", "rich")


async def _cpu_per_fetch(base: str, client: str, urls: list[str], page: bool, rounds: int) -> list[float]:
    """ms of CPU per GET (median over ``urls``) in each round, warm pool, one request at a time."""
    upstream = Upstream(RouteConfig(prefix="/simple", upstream=base), Metrics(), 60.0, range_client=client)
    try:

        async def get(url: str) -> None:
            await (upstream.fetch_page(url) if page else upstream.fetch_small(url))

        await get(urls[0])  # the connection (and TLS) is not measured
        per_round = []
        for _ in range(rounds):
            costs = []
            for url in urls:
                started = time.process_time()
                await get(url)
                costs.append((time.process_time() - started) * 1000)
            per_round.append(statistics.median(costs))
        return per_round
    finally:
        await upstream.aclose()


async def _fetch_targets(args: argparse.Namespace, fake: str) -> tuple[str, list[str], list[str]]:
    """The route's base URL, the pages and the small files to GET."""
    base = fake + "/simple" if fake else discover_default_index().url.rstrip("/")
    projects = [f"p{args.page_files}"] if fake else list(_WORKLOAD_A)
    pages = [f"{base}/{name}/" for name in projects]
    async with httpx.AsyncClient(timeout=60) as client:
        listing = (await client.get(pages[-1 if fake else 5], headers={"Accept": _JSON})).json()["files"]
    if fake:
        small = [entry["url"] for entry in listing[:40]]  # one-byte files: the per-request cost alone
    else:
        # The newest wheels' PEP 658 files (served, advertised or not; a 404 costs the same).
        small = [e["url"] + ".metadata" for e in listing if e["url"].endswith(".whl")][-40:]
    listed = httpx.URL(pages[-1 if fake else 5])  # relative links resolve against their page
    return base, pages * (5 if fake else 1), [str(listed.join(u)) for u in small]


async def _fetches(args: argparse.Namespace, fake: str = "") -> None:
    base, pages, small = await _fetch_targets(args, fake)
    where = f"fake upstream, a page of {args.page_files} files" if fake else "default index, workload (a)"
    print(f"\n### CPU per GET through Upstream.fetch_page / fetch_small ({where}), one at a time\n")
    print("| range_client | ms CPU per page GET | ms CPU per small GET |")
    print("|---|---|---|")
    for client in ("httpx", "aiohttp"):
        cells = []
        for urls, page in ((pages, True), (small, False)):
            values = await _cpu_per_fetch(base, client, urls, page, args.rounds)
            cells.append(f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
        print(f"| {client} | {cells[0]} | {cells[1]} |")


def _run_fetches(args: argparse.Namespace) -> None:
    if args.upstream == "live":
        asyncio.run(_fetches(args))
        return
    with (
        _harness.scratch_dir(keep=False) as work,
        _harness.upstream(work, "--page-sizes", str(args.page_files)) as up,
    ):
        asyncio.run(_fetches(args, up.url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", default="pydantic-core", help="a project with many wheels per release")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetches", action="store_true", help="CPU per page / small GET through Upstream")
    parser.add_argument("--upstream", choices=("fake", "live"), default="fake", help="with --fetches")
    parser.add_argument("--page-files", type=int, default=20000, help="with --fetches --upstream fake")
    args = parser.parse_args(argv)
    if args.fetches:
        _run_fetches(args)
    else:
        asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
