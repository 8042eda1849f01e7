"""Benchmark (issue 7, workloads a and b): ``uv lock`` straight to an index vs through the proxies.

(b), the default: the seed's PyTorch-shaped fake upstream (``_upstream.py --fixture pytorch``, the
``pytorch_upstream`` test fixture's options, 50 ms injected per upstream request) and the seed's
project (``tests.e2e.e2ekit.seed_pyproject``).  Nothing leaves 127.0.0.1.

(a), ``--live``: the project ``requests numpy pandas fastapi httpx pydantic sqlalchemy rich`` against
the real default index (whatever ``proxy.default_index.discover_default_index()`` finds: uv's or
pip's configured index; no host name is written here).  Opt-in because it costs the real index
traffic; bounded by ``--rounds`` and a per-lock timeout.

Systems, interleaved in a rotating order every round: the index directly; wheelmeld
``--workers 1`` running ahead of the resolver (issue 17) off, on with 4 jobs at once, and with 16
(the default) ("no ahead", "ahead", "ahead c16"), and ``--workers 2`` as configured by default
(``python -m proxy serve``, a fresh cache per round); with ``--baseline DIR`` the same from another
source tree (say, the parent commit); proxpi (its own venv, gunicorn,
fresh cache per round) when available.  Per proxy and round: a *cold* lock (empty
proxy cache) then a *warm* lock (same proxy, now filled); every lock gets a fresh ``UV_CACHE_DIR``,
``UV_PYTHON_DOWNLOADS=never`` and Python 3.11 (this interpreter).  The fake upstream also reports
how many requests each lock cost it; a one-worker proxy's own ``/metrics`` say how many it sent
upstream and how many of them were PEP 658 probes answered 404 (the live index's count; with two
workers each worker counts its own, so those rows show none), and how many requests running ahead
spent on releases the lock never asked for. On (a), direct's own requests are counted once, from
an extra untimed ``uv lock -vv`` (its log names every request it sends).

Run: ``.venv/bin/python benchmarks/bench_uv_lock.py`` (``--live`` for a; ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from uv import find_uv_bin

from benchmarks._harness import (
    BenchError,
    Server,
    add_baseline_option,
    dump_json,
    exit_on_sigterm,
    machine,
    proxpi,
    proxpi_available,
    scratch_dir,
    spread,
    upstream,
    upstream_stats,
    wheelmeld,
)
from proxy.default_index import discover_default_index
from tests.e2e.e2ekit import seed_pyproject

__all__ = ["main"]

LIVE_REQUIREMENTS = ("requests", "numpy", "pandas", "fastapi", "httpx", "pydantic", "sqlalchemy", "rich")
_SEED_PREFIX = "/whl/nightly/cu126"
# Only how to reach a host (TLS roots, an outbound proxy), never which index: passed through.
_TRANSPORT = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


class LockFailed(RuntimeError):
    """``uv lock`` exited non-zero or timed out."""


@dataclass
class _Cell:
    seconds: list[float] = field(default_factory=list)
    upstream_requests: list[int] = field(default_factory=list)
    # From a one-worker proxy's /metrics, per cold lock: requests it sent upstream by kind.
    proxy_requests: list[Counter[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def live_pyproject(index_url: str, requirements: tuple[str, ...] = LIVE_REQUIREMENTS) -> str:
    deps = ", ".join(f'"{r}"' for r in requirements)
    return f"""\
[project]
name = "bench-live"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [{deps}]

[[tool.uv.index]]
name = "under-test"
url = "{index_url}"
default = true
"""


def _uv_env(home: Path, cache: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "UV_CACHE_DIR": str(cache),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": sys.executable,
        "UV_NO_PROGRESS": "1",
    }
    env.update({k: os.environ[k] for k in _TRANSPORT if k in os.environ})
    if any(k.lower().endswith("_proxy") for k in env):
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def uv_lock(workdir: Path, pyproject: str, timeout: float) -> float:
    """Seconds one ``uv lock`` takes in a fresh project with a fresh uv cache."""
    return _run_lock(workdir, pyproject, timeout)[0]


# uv -vv writes one such line per HTTP request it sends (pages, HEADs, range GETs, .metadata GETs).
_UV_REQUEST = re.compile(r"Attempting (?:unauthenticated|authenticated) request for `([^`]+)`")


def uv_requests(workdir: Path, pyproject: str, timeout: float) -> Counter[str]:
    """The requests one cold ``uv lock`` sends to its index, by kind (page / metadata / range, the
    HEADs uv sends before range reads counted with them), read from its ``-vv`` log: a lock of its
    own, untimed, since the log slows uv down."""
    found: Counter[str] = Counter()
    for url in _UV_REQUEST.findall(_run_lock(workdir, pyproject, timeout, "-vv")[1]):
        path = url.partition("?")[0]
        found["page" if path.endswith("/") else "metadata" if path.endswith(".metadata") else "range"] += 1
    return found


def _run_lock(workdir: Path, pyproject: str, timeout: float, *flags: str) -> tuple[float, str]:
    run = Path(tempfile.mkdtemp(prefix="lock-", dir=workdir))
    (run / "project").mkdir()
    (run / "home").mkdir()
    (run / "project" / "pyproject.toml").write_text(pyproject)
    env = _uv_env(run / "home", run / "uv-cache")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [find_uv_bin(), "lock", *flags],
            cwd=run / "project",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise LockFailed(f"uv lock timed out after {timeout:.0f} s") from exc
    elapsed = time.perf_counter() - started
    shutil.rmtree(run, ignore_errors=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise LockFailed(f"uv lock exited {done.returncode}: {' / '.join(lines[-3:])}")
    return elapsed, done.stderr


# A system: name → factory(workdir) giving a context manager that yields the index URL for uv and
# the proxy's /metrics URL (None: not a proxy, or one whose workers count apart).
_System = Callable[[Path], contextlib.AbstractContextManager[tuple[str, str | None]]]


# Not upstream requests of their own kind: of those, what the counts are kept apart under.
_PROBE_MISSES = "404 probe"
_WASTED = "wasted running ahead"
# Running ahead of the resolver (issue 17) on and off, whatever the default.
_AHEAD = {
    "ahead": {"WHEELMELD_MELD_RUN_AHEAD_DEPTH": "2", "WHEELMELD_MELD_RUN_AHEAD_CONCURRENCY": "4"},
    "ahead c16": {"WHEELMELD_MELD_RUN_AHEAD_DEPTH": "2", "WHEELMELD_MELD_RUN_AHEAD_CONCURRENCY": "16"},
    "no ahead": {"WHEELMELD_MELD_RUN_AHEAD_DEPTH": "0"},
}


def _proxy_counts(metrics_url: str) -> Counter[str]:
    """Requests sent upstream so far by kind (page, metadata, range, file), and PEP 658 probes
    answered 404 as "404 probe" (absent from a tree without that counter), from a proxy's /metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    counts: Counter[str] = Counter()
    for kind, n in re.findall(r'^wheelmeld_upstream_requests_total\{kind="([^"]+)"\} (\d+)$', text, re.M):
        counts[kind] = int(n)
    for n in re.findall(r'^wheelmeld_metadata_probes_total\{outcome="missing"\} (\d+)$', text, re.M):
        counts[_PROBE_MISSES] = int(n)
    wasted = (
        r'^wheelmeld_ahead_(?:upstream_requests_total\{outcome="wasted"\}|unused_upstream_requests) (\d+)$'
    )
    for n in re.findall(wasted, text, re.M):
        counts[_WASTED] += int(n)
    return counts


def _systems(
    args: argparse.Namespace, index_url: str, route: tuple[str, str], suffix: str
) -> dict[str, _System]:
    """``route``: (prefix, upstream) for wheelmeld; ``suffix``: the index path below the proxy."""

    @contextlib.contextmanager
    def direct(workdir: Path) -> Iterator[tuple[str, str | None]]:
        yield index_url, None

    def wm(workers: int, source: Path | None = None, env: dict[str, str] | None = None) -> _System:
        @contextlib.contextmanager
        def start(workdir: Path) -> Iterator[tuple[str, str | None]]:
            routes = {route[0]: route[1]}
            with wheelmeld(workdir, routes, workers=workers, source=source, env=env) as server:
                yield server.url + suffix, server.url + "/metrics" if workers == 1 else None

        return start

    @contextlib.contextmanager
    def px(workdir: Path) -> Iterator[tuple[str, str | None]]:
        with proxpi(workdir, index_url.rstrip("/") + "/") as server:
            yield server.url + "/index/", None

    systems: dict[str, _System] = {"direct": direct}
    systems |= {f"wheelmeld w1 {name}": wm(1, env=env) for name, env in _AHEAD.items()}
    systems["wheelmeld w2"] = wm(2)
    if args.baseline:
        systems["wheelmeld w1 baseline"] = wm(1, args.baseline)
        systems["wheelmeld w2 baseline"] = wm(2, args.baseline)
    why = proxpi_available()
    if why is None and not args.no_proxpi:
        systems["proxpi"] = px
    elif why:
        print(f"proxpi skipped: {why}", file=sys.stderr)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        systems = {name: start for name, start in systems.items() if name in wanted}
    return systems


def _measure(
    args: argparse.Namespace,
    workdir: Path,
    systems: dict[str, _System],
    pyproject: Callable[[str], str],
    up: Server | None,
) -> dict[str, dict[str, _Cell]]:
    cells: dict[str, dict[str, _Cell]] = {name: {"cold": _Cell(), "warm": _Cell()} for name in systems}
    names = list(systems)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            phases = ("cold",) if name == "direct" else ("cold", "warm")
            try:
                with systems[name](workdir) as (url, metrics_url):
                    for phase in phases:
                        before = upstream_stats(up)["requests"] if up else 0
                        counted = _proxy_counts(metrics_url) if metrics_url else Counter()
                        cell = cells[name][phase]
                        try:
                            seconds = uv_lock(workdir, pyproject(url), args.timeout)
                        except LockFailed as exc:
                            cell.failures.append(str(exc))
                            print(f"round {round_ + 1} {name} {phase}: FAILED {exc}", file=sys.stderr)
                            continue
                        cell.seconds.append(seconds)
                        if up:
                            cell.upstream_requests.append(upstream_stats(up)["requests"] - before)
                        if metrics_url:
                            time.sleep(args.settle)  # run-ahead work still in flight counts too
                            now = _proxy_counts(metrics_url)  # keeps kinds at 0 ("-" drops them)
                            cell.proxy_requests.append(Counter({k: n - counted[k] for k, n in now.items()}))
                        print(f"round {round_ + 1} {name:22} {phase}: {seconds:.2f} s", file=sys.stderr)
                    if name == "direct" and up is None and round_ == 0:
                        # The live index counts nothing for us: uv's own log does, once.
                        with contextlib.suppress(LockFailed):
                            cells[name]["cold"].proxy_requests.append(
                                uv_requests(workdir, pyproject(url), args.timeout)
                            )
            except BenchError as exc:
                cells[name]["cold"].failures.append(str(exc).splitlines()[0])
                print(f"round {round_ + 1} {name}: could not start: {exc}", file=sys.stderr)
    if "direct" in cells:
        cells["direct"]["warm"] = cells["direct"]["cold"]  # no proxy cache: one number
    return cells


def _kinds(locks: list[Counter[str]]) -> str:
    """Medians over the locks: the total, then by kind; "–" for a count a tree does not keep."""
    if not locks:
        return "–"

    def median(kind: str | None) -> str:
        if kind is not None and not any(kind in lock for lock in locks):
            return "–"
        values = [
            lock[kind] if kind else sum(v for k, v in lock.items() if k not in (_PROBE_MISSES, _WASTED))
            for lock in locks
        ]
        return f"{statistics.median(values):.0f}"

    parts = " / ".join(median(k) for k in ("page", "metadata", "range"))
    return f"{median(None)} ({parts}; {median(_PROBE_MISSES)}; {median(_WASTED)})"


def _print(
    title: str, cells: dict[str, dict[str, _Cell]], args: argparse.Namespace, with_upstream: bool
) -> None:
    print(f"\n### {title}: uv lock seconds, {args.rounds} rounds, median (min–max)\n")
    print(f"Machine: {machine()}\n")
    direct = cells.get("direct", {}).get("cold")
    base = sorted(direct.seconds)[len(direct.seconds) // 2] if direct and direct.seconds else None
    head = "| system | proxy cold | proxy warm | cold / direct | warm / direct |"
    rule = "|---|---:|---:|---:|---:|"
    if with_upstream:
        head += " upstream requests cold / warm |"
        rule += "---:|"
    head += " upstream requests cold, the proxy's (direct: uv's): all (page / metadata / range; 404 probes;"
    head += " wasted ahead) |"
    rule += "---:|"
    print(head)
    print(rule)
    for name, phases in cells.items():
        row = f"| {name} | {spread(phases['cold'].seconds)} | {spread(phases['warm'].seconds)} |"
        for phase in ("cold", "warm"):
            secs = sorted(phases[phase].seconds)
            row += f" {secs[len(secs) // 2] / base:.2f}× |" if base and secs else " – |"
        if with_upstream:
            reqs = [
                spread([float(x) for x in phases[p].upstream_requests], "{:.0f}") for p in ("cold", "warm")
            ]
            row += f" {reqs[0]} / {reqs[1]} |"
        cold = phases["cold"]
        row += f" {_kinds(cold.proxy_requests)} |"
        print(row)
    failures = [(n, p, f) for n, ph in cells.items() for p, c in ph.items() for f in c.failures]
    for name, phase, failure in dict.fromkeys(failures):
        print(f"\n- {name} {phase} failed: {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live", action="store_true", help="workload (a): the real default index (opt-in)")
    parser.add_argument(
        "--requirements",
        help=f"(a): comma-separated requirements to lock (default: {','.join(LIVE_REQUIREMENTS)})",
    )
    parser.add_argument(
        "--unadvertised-pep658",
        action="store_true",
        help="(b): the fake upstream serves PEP 658 files without advertising them",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="(b): injected per upstream request")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per uv lock")
    parser.add_argument("--no-proxpi", action="store_true")
    parser.add_argument("--only", help="comma-separated system names to run (e.g. 'direct,wheelmeld w1')")
    parser.add_argument("--json", type=Path, help="also write raw numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds after a proxied lock before its counts are read"
    )
    add_baseline_option(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with scratch_dir(args.keep) as workdir:
        if args.live:
            index = discover_default_index().url.rstrip("/")
            print(f"live index: found via {discover_default_index().source}", file=sys.stderr)
            systems = _systems(args, index + "/", ("/simple", index), "/simple/")
            wanted = tuple(args.requirements.split(",")) if args.requirements else LIVE_REQUIREMENTS
            cells = _measure(args, workdir, systems, lambda url: live_pyproject(url, wanted), None)
            title = f"(a) live index, {' '.join(wanted)}"
            _print(title, cells, args, with_upstream=False)
        else:
            latency = ["--latency-ms", str(args.latency_ms)]
            latency += ["--unadvertised-pep658"] if args.unadvertised_pep658 else []
            with upstream(workdir, "--fixture", "pytorch", *latency) as up:
                index = up.url + _SEED_PREFIX
                systems = _systems(args, index, ("/whl", up.url + "/whl"), _SEED_PREFIX)
                cells = _measure(args, workdir, systems, seed_pyproject, up)
            title = f"(b) seed PyTorch-shaped upstream, {args.latency_ms:g} ms per upstream request"
            title += ", PEP 658 files served unadvertised" if args.unadvertised_pep658 else ""
            _print(title, cells, args, with_upstream=True)
        dump_json(args.json, {n: {p: c.__dict__ for p, c in ph.items()} for n, ph in cells.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
