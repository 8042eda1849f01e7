"""Benchmark (issue 7, workloads c and e): warm page and ``.metadata`` serving under load, and page size.

(c) The seed's PyTorch-shaped upstream (``_upstream.py --fixture pytorch``) behind wheelmeld
(``--workers 1`` and ``2``), proxpi (when its venv exists) and nginx serving the very bytes
wheelmeld served as static files (the ceiling).  Each target — the torch project page as HTML and
as PEP 691 JSON, and one torch wheel's melded ``.metadata`` — is warmed, then loaded by ``wrk`` at
16 connections; systems are interleaved round by round.

(e) One project per page size (10 … 20,000 files, releases of 20 wheels) behind wheelmeld
``--workers 1`` and nginx: warm p50/p99 at one connection (latency, not throughput), plus the
cold first fetch.

Run: ``.venv/bin/python benchmarks/bench_serve.py`` (``--help``; ``--quick`` for a smoke run).
Prints markdown tables.  Needs ``wrk`` and ``nginx`` (Debian packages).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import (
    BenchError,
    Server,
    WrkResult,
    add_baseline_option,
    dump_json,
    exit_on_sigterm,
    machine,
    nginx,
    proxpi,
    proxpi_available,
    scratch_dir,
    spread,
    upstream,
    wheelmeld,
    wrk,
)

__all__ = ["main"]

_JSON = "application/vnd.pypi.simple.v1+json"
_HTML = "text/html"
_PREFIX = "/whl/nightly/cu126"
_SIZES = (10, 100, 1000, 10000, 20000)


def _get(url: str, accept: str) -> bytes:
    response = httpx.get(url, headers={"Accept": accept}, timeout=120)
    response.raise_for_status()
    return response.content


def _targets(base: str, page: str, metadata: str | None) -> dict[str, tuple[str, str | None]]:
    """label → (url, Accept) for one system."""
    out: dict[str, tuple[str, str | None]] = {"page HTML": (page, _HTML), "page JSON": (page, _JSON)}
    if metadata is not None:
        out[".metadata"] = (metadata, None)
    return out


def _warm(targets: dict[str, tuple[str, str | None]]) -> None:
    for url, accept in targets.values():
        for _ in range(3):
            _get(url, accept or "*/*")


def _load_test(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, list[WrkResult]]]:
    results: dict[str, dict[str, list[WrkResult]]] = {}
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(upstream(workdir, "--fixture", "pytorch"))
        systems: dict[str, dict[str, tuple[str, str | None]]] = {}
        servers: dict[str, Server] = {}
        variants: list[tuple[int, Path | None]] = [(1, None), (2, None)]
        if args.baseline:
            variants += [(1, args.baseline), (2, args.baseline)]
        for workers, source in variants:
            wm = stack.enter_context(
                wheelmeld(workdir, {_PREFIX: up.url + _PREFIX}, workers=workers, source=source)
            )
            page = f"{wm.url}{_PREFIX}/torch/"
            listing = httpx.get(page, headers={"Accept": _JSON}, timeout=60).json()
            wheel = next(f["filename"] for f in listing["files"] if f["filename"].endswith(".whl"))
            systems[wm.name] = _targets(wm.url, page, f"{page}{wheel}.metadata")
            servers[wm.name] = wm
        first = systems["wheelmeld w1"]
        _warm(first)
        root = Path(tempfile.mkdtemp(prefix="nginx-root-", dir=workdir))
        (root / "page.html").write_bytes(_get(first["page HTML"][0], _HTML))
        (root / "page.json").write_bytes(_get(first["page JSON"][0], _JSON))
        (root / "file.metadata").write_bytes(_get(first[".metadata"][0], "*/*"))
        ngx = stack.enter_context(nginx(workdir, root))
        systems["nginx (static)"] = {
            "page HTML": (ngx.url + "/page.html", None),
            "page JSON": (ngx.url + "/page.json", None),
            ".metadata": (ngx.url + "/file.metadata", None),
        }
        why = proxpi_available()
        if why is None and not args.no_proxpi:
            try:
                px = stack.enter_context(proxpi(workdir, up.url + _PREFIX + "/"))
                systems["proxpi"] = _targets(px.url, px.url + "/index/torch/", None)
            except BenchError as exc:
                print(f"proxpi skipped: {exc}", file=sys.stderr)
        elif why:
            print(f"proxpi skipped: {why}", file=sys.stderr)
        for targets in systems.values():
            _warm(targets)
        for round_ in range(args.rounds):
            for name, targets in systems.items():
                for label, (url, accept) in targets.items():
                    result = wrk(url, seconds=args.seconds, connections=args.connections, accept=accept)
                    results.setdefault(name, {}).setdefault(label, []).append(result)
                    print(
                        f"round {round_ + 1} {name:16} {label:10} {result.rps:9.0f} req/s "
                        f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms errors {result.errors}",
                        file=sys.stderr,
                    )
        for name, server in servers.items():
            print(f"{name}: pid {server.pid}", file=sys.stderr)
    return results


def _page_sizes(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, dict[str, list[float]]], dict]:
    sizes = [s for s in _SIZES if s <= args.max_size]
    latencies: dict[str, dict[str, list[float]]] = {}
    cold: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(upstream(workdir, "--page-sizes", ",".join(map(str, sizes))))
        proxies = [stack.enter_context(wheelmeld(workdir, {"/simple": up.url + "/simple"}))]
        if args.baseline:
            proxies.append(
                stack.enter_context(wheelmeld(workdir, {"/simple": up.url + "/simple"}, source=args.baseline))
            )
        root = Path(tempfile.mkdtemp(prefix="nginx-sizes-", dir=workdir))
        urls: dict[str, Callable[[int, str], tuple[str, str | None]]] = {}
        for size in sizes:
            for wm in proxies:
                page = f"{wm.url}/simple/p{size}/"
                started = time.perf_counter()
                body = _get(page, _JSON)
                cold[f"{size}|{wm.name}"] = (time.perf_counter() - started) * 1000
            (root / f"p{size}.json").write_bytes(body)
            (root / f"p{size}.html").write_bytes(_get(page, _HTML))
        ngx = stack.enter_context(nginx(workdir, root))
        for wm in proxies:
            urls[wm.name] = lambda size, fmt, base=wm.url: (f"{base}/simple/p{size}/", fmt)
        urls["nginx (static)"] = lambda size, fmt: (
            f"{ngx.url}/p{size}.{'json' if fmt == _JSON else 'html'}",
            None,
        )
        for round_ in range(args.rounds):
            for size in sizes:
                for fmt in (_HTML, _JSON):
                    for name, make in urls.items():
                        url, accept = make(size, fmt)
                        _get(url, accept or "*/*")
                        result = wrk(url, seconds=args.size_seconds, connections=1, threads=1, accept=accept)
                        key = f"{size}|{'JSON' if fmt == _JSON else 'HTML'}|{name}"
                        latencies.setdefault(key, {}).setdefault("p50", []).append(result.p50_ms)
                        latencies[key].setdefault("p99", []).append(result.p99_ms)
                        latencies[key].setdefault("rps", []).append(result.rps)
                        print(f"round {round_ + 1} {key:32} p50 {result.p50_ms:.2f} ms", file=sys.stderr)
    return latencies, cold


def _print_load(results: dict[str, dict[str, list[WrkResult]]], args: argparse.Namespace) -> None:
    print(
        f"\n### (c) warm page and .metadata, {args.connections} connections, {args.seconds:g} s × "
        f"{args.rounds} rounds\n"
    )
    print(f"Machine: {machine()}\n")
    print("| system | target | req/s median (min–max) | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for name, targets in results.items():
        for label, runs in targets.items():
            print(
                f"| {name} | {label} | {spread([r.rps for r in runs], '{:.0f}')} | "
                f"{spread([r.p50_ms for r in runs])} | {spread([r.p99_ms for r in runs])} | "
                f"{sum(r.errors for r in runs)} |"
            )


def _print_sizes(
    latencies: dict[str, dict[str, list[float]]], cold: dict[str, float], args: argparse.Namespace
) -> None:
    print(
        f"\n### (e) page size: warm latency at 1 connection, {args.size_seconds:g} s × {args.rounds} rounds\n"
    )
    print(f"Machine: {machine()}\n")
    print("| files | format | system | p50 ms | p99 ms | req/s |")
    print("|---:|---|---|---:|---:|---:|")
    for key, values in latencies.items():
        size, fmt, name = key.split("|")
        print(
            f"| {size} | {fmt} | {name} | {spread(values['p50'])} | {spread(values['p99'])} | "
            f"{spread(values['rps'], '{:.0f}')} |"
        )
    print("\nCold first fetch (upstream JSON page parsed, cached, rendered):\n")
    names = list(dict.fromkeys(key.split("|")[1] for key in cold))
    print("| files | " + " | ".join(f"{n} ms" for n in names) + " |")
    print("|---:|" + "---:|" * len(names))
    for size in dict.fromkeys(key.split("|")[0] for key in cold):
        print(f"| {size} | " + " | ".join(f"{cold[f'{size}|{n}']:.0f}" for n in names) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per (c) measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size-seconds", type=float, default=3.0, help="wrk duration per (e) measurement")
    parser.add_argument("--max-size", type=int, default=20000)
    parser.add_argument("--only", choices=("load", "sizes"), help="run one workload")
    parser.add_argument("--no-proxpi", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs, pages up to 1,000 files")
    parser.add_argument("--json", type=Path, help="also write raw numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    add_baseline_option(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.quick:
        args.rounds, args.seconds, args.size_seconds, args.max_size = 1, 2.0, 1.0, 1000
    raw: dict[str, object] = {}
    with scratch_dir(args.keep) as workdir:
        if args.only in (None, "load"):
            results = _load_test(args, workdir)
            _print_load(results, args)
            raw["load"] = {
                n: {t: [dataclasses.asdict(r) for r in rs] for t, rs in ts.items()}
                for n, ts in results.items()
            }
        if args.only in (None, "sizes"):
            latencies, cold = _page_sizes(args, workdir)
            _print_sizes(latencies, cold, args)
            raw["sizes"] = {"warm": latencies, "cold_ms": cold}
    dump_json(args.json, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
