"""Benchmark: upstream cost of reading every wheel's METADATA with HTTP range requests.

Issue 3's target: producing the metadata of a release whose wheels are large (20 wheels of
100 MB, on a local upstream without PEP 658 files) costs under 200 KB and under 4 requests per
wheel.  The wheels (stored, incompressible payload) are written to a temporary directory and
streamed from disk by the fake upstream on 127.0.0.1; every METADATA is read with
``fetch_wheel_metadata`` over one pooled httpx client with 16 concurrent fetches.

Run: ``.venv/bin/python benchmarks/bench_range_metadata.py`` (``--help`` for options).
Prints a markdown table: per-wheel upstream bytes and requests, wall time (median of N runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.network.remote_zip import fetch_wheel_metadata
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.upstream import FakeFile, FakeIndex, UpstreamServer
from tests.support.wheels import metadata_from_fields, write_wheel

_PYTHONS = ("cp39", "cp310", "cp311", "cp312", "cp313")
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_11_0_arm64")
_NVIDIA = [f'nvidia-lib{i}-cu12==12.6.{i}; platform_machine == "x86_64"' for i in range(13)]


@dataclass(frozen=True, slots=True)
class _Run:
    wall: float
    requests: int
    upstream_bytes: int
    max_requests: int
    max_bytes: int


def _filenames(count: int) -> list[str]:
    combos = [(py, plat) for plat in _PLATFORMS for py in _PYTHONS]
    return [
        f"bigpkg-2.7.0-{py}-{py}-{plat}.whl" for py, plat in (combos * (count // len(combos) + 1))[:count]
    ]


def _metadata(filename: str) -> bytes:
    requires = ["filelock", "typing-extensions>=4.10.0", "sympy==1.13.1", "networkx", "jinja2", "fsspec"]
    if "x86_64" in filename:
        requires += _NVIDIA
    summary = f"benchmark wheel {filename}"
    return metadata_from_fields("bigpkg", "2.7.0", requires, (), ">=3.9", summary=summary)


def _build(directory: Path, count: int, size: int, members: int) -> FakeIndex:
    files = []
    extra = {f"bigpkg/lib/module_{i:05d}.py": b"VALUE = 1\n" for i in range(members)}
    for filename in dict.fromkeys(_filenames(count)):
        path = write_wheel(directory, filename, _metadata(filename), payload_size=size, extra_members=extra)
        files.append(FakeFile(filename, path=path))
    return FakeIndex.from_files({"bigpkg": files})


async def _read_all(up: UpstreamServer, concurrency: int, tail_size: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, filename: str) -> None:
        async with gate:
            got = await fetch_wheel_metadata(client, up.file_url(filename), filename, tail_size=tail_size)
        if got.metadata != _metadata(filename):
            raise SystemExit(f"wrong METADATA for {filename!r}")

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await asyncio.gather(*(one(client, f) for f in up.index.filenames))
    return time.perf_counter() - started


def _cost(up: UpstreamServer, wall: float) -> _Run:
    """What the upstream's log says the wheels cost, PEP 658 probes ("<file>.metadata") included."""
    per_wheel = [up.requests_for(f) + up.requests_for(f + ".metadata") for f in up.index.filenames]
    return _Run(
        wall=wall,
        requests=sum(len(r) for r in per_wheel),
        upstream_bytes=up.bytes_sent_total(),
        max_requests=max(len(r) for r in per_wheel),
        max_bytes=max(sum(x.bytes_sent for x in r) for r in per_wheel),
    )


def _measure(up: UpstreamServer, concurrency: int, tail_size: int) -> _Run:
    up.log.reset()
    wall = asyncio.run(_read_all(up, concurrency, tail_size))
    return _cost(up, wall)


def _measure_proxy(up: UpstreamServer, cache_root: Path) -> _Run:
    """One ``.metadata`` request through a cold wheelmeld: the meld reads all 20 siblings."""
    cache = Path(tempfile.mkdtemp(dir=cache_root))
    config = proxy_config(cache, {"/up": up.url + up.options.prefix})
    with ProxyServer(config) as proxy:
        httpx.get(f"{proxy.url}/up/bigpkg/", timeout=60).raise_for_status()
        up.log.reset()
        first = up.index.filenames[0]
        started = time.perf_counter()
        response = httpx.get(f"{proxy.url}/up/bigpkg/{quote(first)}.metadata", timeout=120)
        wall = time.perf_counter() - started
    response.raise_for_status()
    if response.headers.get("x-wheelmeld-meld") != "melded":
        raise SystemExit(f"expected a meld, got {response.headers.get('x-wheelmeld-meld')!r}")
    return _cost(up, wall)


def _row(label: str, runs: list[_Run], wheels: int) -> str:
    first = runs[0]
    wall = statistics.median(r.wall for r in runs)
    return (
        f"| {label} | {wheels} | {first.requests / wheels:.2f} (max {first.max_requests}) "
        f"| {first.upstream_bytes / wheels / 1024:.1f} KiB (max {first.max_bytes / 1024:.1f} KiB) "
        f"| {first.upstream_bytes / 1024 / 1024:.2f} MiB | {wall * 1000:.0f} ms | {len(runs)} |"
    )


def _machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, CPU: {cpu}, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheels", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=100, help="stored payload per wheel")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tail-size", type=int, default=64 * 1024)
    parser.add_argument(
        "--members", type=int, nargs="*", default=[0, 2000],
        help="extra small files per wheel, one scenario each (2000: central directory > tail)",
    )  # fmt: skip
    parser.add_argument("--full-baseline", action="store_true", help="also one run with Range refused")
    args = parser.parse_args(argv)

    rows = []
    for members in args.members:
        with tempfile.TemporaryDirectory(prefix="bench-range-") as tmp:
            started = time.perf_counter()
            index = _build(Path(tmp), args.wheels, args.size_mb * 1024 * 1024, members)
            built = time.perf_counter() - started
            print(f"built {args.wheels} wheels x {args.size_mb} MB, {members} extra members in {built:.1f} s")
            with UpstreamServer(index) as up:
                runs = [_measure(up, args.concurrency, args.tail_size) for _ in range(args.runs)]
                rows.append(_row(f"ranges, {members} extra members", runs, args.wheels))
                proxied = [_measure_proxy(up, Path(tmp)) for _ in range(args.runs)]
                label = f"cold meld through wheelmeld, {members} extra members"
                rows.append(_row(label, proxied, args.wheels))
                if args.full_baseline:
                    up.set_options(ranges=False)
                    rows.append(
                        _row(
                            f"no ranges (full), {members} extra members",
                            [_measure(up, 4, args.tail_size)],
                            args.wheels,
                        )
                    )

    print()
    print(f"Remote METADATA reads, {args.wheels} wheels x {args.size_mb} MB on 127.0.0.1, "
          f"concurrency {args.concurrency}, tail {args.tail_size} B")  # fmt: skip
    print()
    print("| scenario | wheels | requests / wheel | upstream bytes / wheel | total | wall (median) | runs |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print(f"Machine: {_machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
