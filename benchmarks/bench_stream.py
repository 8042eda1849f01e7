"""Benchmark (issue 7, workload d): one cold 2 GB file streamed to 10 clients at once.

The fake upstream (``_upstream.py --big-file``) serves one wheel whose body is a sparse file on
disk (zeros: page-cache speed, no real disk reads; the proxy's cache copy is real).  Per round:

* ``direct x1`` / ``direct xN``: curl straight from the upstream, one client, then N at once;
* ``wheelmeld xN``: a fresh ``wheelmeld --workers 1`` (cold cache; the page fetched first, the file
  not), N curl clients started together.

Reported: wall time until the last client finished, per-client MB/s (median, min–max), bytes the
upstream sent (target: one download), and the proxy's peak RSS (``VmHWM`` of its process tree).
Everything lives in a temporary directory removed at the end.

Run: ``.venv/bin/python benchmarks/bench_stream.py`` (``--size-mb``, ``--clients``, ``--rounds``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import (
    BenchError,
    add_baseline_option,
    dump_json,
    exit_on_sigterm,
    machine,
    peak_rss_mb,
    spread,
    upstream,
    upstream_stats,
    wheelmeld,
)

__all__ = ["main"]

_FILE = "big-1.0-py3-none-any.whl"


@dataclass(frozen=True, slots=True)
class _Fetch:
    wall: float
    per_client_mbps: list[float]
    upstream_bytes: int
    upstream_requests: int
    peak_rss_mb: float | None


def _curl_all(url: str, clients: int, size: int) -> tuple[float, list[float]]:
    """Start ``clients`` curls together; wall time and each client's MB/s."""
    curl = shutil.which("curl")
    if curl is None:
        raise BenchError("curl is not installed")
    fmt = "%{http_code} %{size_download} %{time_total}"
    started = time.perf_counter()
    procs = [
        subprocess.Popen([curl, "-s", "-o", "/dev/null", "-w", fmt, url], stdout=subprocess.PIPE, text=True)
        for _ in range(clients)
    ]
    speeds = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        code, got, seconds = out.split()
        if code != "200" or int(got) != size:
            raise BenchError(f"client got HTTP {code} and {got} of {size} bytes from {url!r}")
        speeds.append(size / float(seconds) / 1e6)
    return time.perf_counter() - started, speeds


def _round(workdir: Path, up_url: str, up: object, args: argparse.Namespace, size: int) -> dict[str, _Fetch]:
    out: dict[str, _Fetch] = {}
    direct = f"{up_url}/simple/big/{_FILE}"
    for label, clients in (("direct x1", 1), (f"direct x{args.clients}", args.clients)):
        before = upstream_stats(up)  # type: ignore[arg-type]
        wall, speeds = _curl_all(direct, clients, size)
        after = upstream_stats(up)  # type: ignore[arg-type]
        out[label] = _Fetch(
            wall, speeds, after["bytes"] - before["bytes"], after["requests"] - before["requests"], None
        )
        print(f"{label}: {wall:.1f} s, {spread(speeds, '{:.0f}')} MB/s per client", file=sys.stderr)
    for source in (None, args.baseline) if args.baseline else (None,):
        cache = Path(tempfile.mkdtemp(prefix="wm-stream-cache-", dir=workdir))
        try:
            with wheelmeld(workdir, {"/simple": up_url + "/simple"}, cache_dir=cache, source=source) as wm:
                httpx.get(f"{wm.url}/simple/big/", timeout=60).raise_for_status()
                before = upstream_stats(up)  # type: ignore[arg-type]
                wall, speeds = _curl_all(f"{wm.url}/simple/big/{_FILE}", args.clients, size)
                after = upstream_stats(up)  # type: ignore[arg-type]
                rss = peak_rss_mb(wm.pid)
            label = f"{wm.name} x{args.clients}"
            out[label] = _Fetch(
                wall, speeds, after["bytes"] - before["bytes"], after["requests"] - before["requests"], rss
            )
            print(
                f"{label}: {wall:.1f} s, {spread(speeds, '{:.0f}')} MB/s, RSS {rss:.0f} MB", file=sys.stderr
            )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write raw numbers here")
    add_baseline_option(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    size = args.size_mb * 1024 * 1024
    rounds: list[dict[str, _Fetch]] = []
    with tempfile.TemporaryDirectory(prefix="wm-bench-stream-") as tmp:
        workdir = Path(tmp)
        body = workdir / _FILE
        with body.open("wb") as fh:
            fh.truncate(size)  # sparse: costs no disk, reads as zeros
        with upstream(workdir, "--big-file", str(body)) as up:
            # The upstream hashes the file on its first page render: do it before any clock runs.
            httpx.get(f"{up.url}/simple/big/", timeout=300).raise_for_status()
            for _ in range(args.rounds):
                rounds.append(_round(workdir, up.url, up, args, size))
    labels = list(rounds[0])
    title = f"one cold {args.size_mb} MB file, {args.clients} clients at once, {args.rounds} round(s)"
    print(f"\n### (d) {title}\n")
    print(f"Machine: {machine()}\n")
    print("| case | wall s | per-client MB/s | upstream bytes | upstream requests | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in labels:
        runs = [r[label] for r in rounds]
        rss = [r.peak_rss_mb for r in runs if r.peak_rss_mb is not None]
        speeds = [s for r in runs for s in r.per_client_mbps]
        upstream_bytes = " / ".join(f"{r.upstream_bytes / size:.2f}×" for r in runs)
        requests = " / ".join(str(r.upstream_requests) for r in runs)
        print(
            f"| {label} | {spread([r.wall for r in runs], '{:.1f}')} | {spread(speeds, '{:.0f}')} | "
            f"{upstream_bytes} file | {requests} | {spread(rss, '{:.0f}') if rss else '–'} |"
        )
    dump_json(args.json, [{k: v.__repr__() for k, v in r.items()} for r in rounds])
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
