"""Where a cold ``uv lock`` through the proxy spends its CPU (issue 17): the event loop's thread, the
worker threads beside it, and any child process, per lock, with what the lock cost the cache and
the upstream; variants (source trees, settings) taking turns, so their differences are measured
side by side.

Per lock, one fresh one-worker proxy (``python -m proxy serve``, fresh cache) and a fresh uv cache:

* ``wall``: the lock's seconds;
* ``loop``: CPU seconds of the proxy's main thread (the event loop: ``/proc/<pid>/task/<pid>/stat``);
* ``process``: CPU seconds of the whole proxy process (its worker threads: big pages parsed and
  rendered in ``asyncio.to_thread``, the cache's writes, whose kernel time counts here too);
* ``children``: CPU seconds of processes the proxy started, over their whole life (none unless a
  variant starts some);
* ``files``: files the lock left in the cache; ``range``: range requests the proxy sent upstream.

Workloads as ``bench_uv_lock.py``: (b) by default, the seed's PyTorch-shaped fake upstream (50 ms per
request, nothing leaves 127.0.0.1); ``--live`` for (a), the user's default index (opt-in: real
traffic). Linux only (``/proc``).

``--variant NAME:KEY=VALUE,...`` adds a variant with ``WHEELMELD_*`` settings (repeatable; the
default variant is "default", the tree's own defaults); ``--baseline DIR`` adds "baseline", the
proxy package of another tree. ``--timeline N`` prints, for each variant's last lock, its N slowest
client requests from the JSON access log (arrival, duration, cache outcome, path).

Run: ``.venv/bin/python benchmarks/bench_cold_lock_cpu.py --live --rounds 5 \\
    --variant "c64:WHEELMELD_UPSTREAM_CONCURRENCY=64" --timeline 15``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks._harness import (
    Server,
    add_baseline_option,
    exit_on_sigterm,
    machine,
    scratch_dir,
    spread,
    upstream,
    wheelmeld,
)
from benchmarks.bench_uv_lock import _SEED_PREFIX, LIVE_REQUIREMENTS, live_pyproject, uv_lock
from proxy.default_index import discover_default_index
from tests.e2e.e2ekit import seed_pyproject

__all__ = ["main"]

_COLUMNS = ("wall", "loop", "process", "children", "files", "range")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    source: Path | None = None  # None: this tree (``WHEELMELD_BENCH_SOURCE`` or the checkout)
    env: dict[str, str] = field(default_factory=dict)


def _cpu_seconds(stat_path: Path) -> float:
    """utime + stime of one ``/proc`` stat file (the fields after the command's closing paren)."""
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in children.read_text().split()]
    return found


def _process_cpu(pid: int) -> tuple[float, float, float]:
    """(loop thread, whole process, children) CPU seconds of ``pid`` so far."""
    proc = Path(f"/proc/{pid}")
    children = 0.0
    for child in _children(pid):
        with contextlib.suppress(OSError):
            children += _cpu_seconds(Path(f"/proc/{child}/stat"))
    return _cpu_seconds(proc / "task" / str(pid) / "stat"), _cpu_seconds(proc / "stat"), children


def _range_requests(server: Server) -> int:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(r'^wheelmeld_upstream_requests_total\{kind="range"\} (\d+)$', text, re.M)
    return int(found[1]) if found else 0


def _timeline(log: Path, slowest: int) -> list[str]:
    """The ``slowest`` client requests of a JSON access log, in arrival order, times from the first."""
    rows: list[tuple[float, float, str, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line[line.index("{") :])
            if entry["path"] in ("/healthz", "/metrics"):
                continue
            when = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
            rows.append((when, float(entry["ms"]), str(entry["cache"]), entry["path"]))
    if not rows:
        return ["(no JSON access log lines)"]
    start = min(r[0] for r in rows)
    kept = sorted(sorted(rows, key=lambda r: -r[1])[:slowest])
    return [f"{when - start:7.3f} s  +{ms:7.1f} ms  {cache:<11} {path}" for when, ms, cache, path in kept]


def _lock_once(
    workdir: Path, variant: Variant, routes: dict[str, str], pyproject: Callable[[str], str], suffix: str,
    timeout: float,
) -> tuple[dict[str, float], Path]:  # fmt: skip
    cache = workdir / f"cache-{variant.name}-{len(list(workdir.glob('cache-*')))}"
    env = {"WHEELMELD_LOG_FORMAT": "json", **variant.env}
    with wheelmeld(workdir, routes, cache_dir=cache, source=variant.source, env=env) as server:
        pid = server.proc.pid
        loop0, proc0, _ = _process_cpu(pid)
        wall = uv_lock(workdir, pyproject(server.url + suffix), timeout)
        loop1, proc1, children = _process_cpu(pid)
        ranges = _range_requests(server)
        log = server.log
    files = sum(1 for p in cache.rglob("*") if p.is_file())
    row = {"wall": wall, "loop": loop1 - loop0, "process": proc1 - proc0, "children": children}
    return row | {"files": float(files), "range": float(ranges)}, log


def _parse_variant(text: str) -> Variant:
    name, _, settings = text.partition(":")
    env: dict[str, str] = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("WHEELMELD_"):
            raise argparse.ArgumentTypeError(f"{pair!r}: expected WHEELMELD_KEY=VALUE")
        env[key] = value
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:KEY=VALUE,...")
    return Variant(name, env=env)


@contextlib.contextmanager
def _workload(
    args: argparse.Namespace, workdir: Path
) -> Iterator[tuple[dict[str, str], Callable[[str], str], str]]:
    if args.live:
        index = discover_default_index().url.rstrip("/")
        print(f"live index: found via {discover_default_index().source}", file=sys.stderr)
        yield {"/simple": index}, lambda url: live_pyproject(url, LIVE_REQUIREMENTS), "/simple/"
    else:
        with upstream(workdir, "--fixture", "pytorch", "--latency-ms", str(args.latency_ms)) as up:
            yield {"/whl": up.url + "/whl"}, seed_pyproject, _SEED_PREFIX


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live", action="store_true", help="workload (a): the real default index (opt-in)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="(b): injected per upstream request")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per uv lock")
    parser.add_argument("--variant", type=_parse_variant, action="append", default=[], metavar="NAME:K=V,...")
    parser.add_argument("--timeline", type=int, default=0, metavar="N", help="N slowest requests per variant")
    add_baseline_option(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    variants = [Variant("default"), *args.variant]
    if args.baseline:
        variants.append(Variant("baseline", source=args.baseline))
    rows: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    logs: dict[str, list[str]] = {}
    with scratch_dir(False) as workdir, _workload(args, workdir) as (routes, pyproject, suffix):
        for round_ in range(args.rounds):
            for variant in variants[round_ % len(variants) :] + variants[: round_ % len(variants)]:
                row, log = _lock_once(workdir, variant, routes, pyproject, suffix, args.timeout)
                rows[variant.name].append(row)
                print(f"round {round_ + 1} {variant.name}: " + ", ".join(f"{k} {row[k]:g}" for k in _COLUMNS),
                      file=sys.stderr)  # fmt: skip
                if args.timeline:
                    logs[variant.name] = _timeline(log, args.timeline)
    print(f"\nMachine: {machine()}\n")
    print("| variant | " + " | ".join(_COLUMNS) + " |")
    print("|---|" + "---:|" * len(_COLUMNS))
    for name, found in rows.items():
        cells = [spread([r[c] for r in found], "{:.2f}" if c in _COLUMNS[:4] else "{:.0f}") for c in _COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, lines in logs.items():
        print(f"\n{name}, last lock, slowest requests:\n" + "\n".join(lines))
    medians = {n: statistics.median(r["wall"] for r in f) for n, f in rows.items() if f}
    print("\nmedian wall: " + ", ".join(f"{n} {w:.2f} s" for n, w in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
