"""Benchmark (opt-in, the real default index): CPU per range request, httpx against aiohttp.

A cold meld reads every sibling's METADATA with range requests; on an index without core-metadata
hashes a cold ``uv lock`` of workload (a) makes ~600 of them, and the HTTP client's CPU per request
is the largest share of the proxy's CPU (``profile_hot.py --cold-lock``). This measures that cost
alone: 60 suffix ranges of 32 KiB of one release's wheels, 32 at once over a warm pool, for httpx over
HTTP/2 (what wheelmeld uses for everything but wheels' range reads), httpx over HTTP/1.1, and
aiohttp (HTTP/1.1, C parser: what it uses for those reads, ``proxy/network/range_client.py``).
Run: ``.venv/bin/python benchmarks/bench_http_clients.py``.
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

from proxy.default_index import discover_default_index

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", default="pydantic-core", help="a project with many wheels per release")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(_run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
