"""Benchmark (issue 16): the fleet side by side with one replica and with nginx serving static bytes.

Systems, all on 127.0.0.1 in front of the seed's PyTorch-shaped fake upstream (``_upstream.py
--fixture pytorch``, ``--latency-ms`` injected per upstream request):

* **1 replica, local disk**: ``wheelmeld serve --workers 1``, the default backend;
* **2 replicas on S3**: two ``wheelmeld serve --workers 1`` sharing one bucket on moto's S3 server
  (``moto[server]``, a Python emulator of the S3 HTTP API: it sets the pace of every bucket request)
  and one ``redis-server`` for the leases (``tests/support/fleet.py``'s config); load is spread over
  both, one ``wrk`` per replica with half the connections each, summed;
* **2 replicas behind nginx**: the same two replicas behind the shipped ``deploy/nginx.conf``
  (``tests/deploy/tier.py`` rewrites only its addresses and paths), its cache included;
* **nginx (static)**: nginx serving the bytes the single replica served, as files (the ceiling).

(1) Warm load: the torch project page as PEP 691 JSON, one torch wheel's melded ``.metadata`` and
one wheel file, each warmed, then ``wrk`` at ``--connections``; systems interleaved round by round.

(2) ``uv lock`` of the seed project (``bench_uv_lock.py``'s workload and timing), cold then warm,
fresh servers (and a fresh bucket and Redis) every round, systems in a rotating order: 1 replica on
local disk; the same with Redis leases (``--redis-url``: the leases' share, without the bucket);
the fleet through the nginx tier; the fleet without the tier, cold through replica A
and warm through replica B (whose local cache is empty: everything comes from the bucket).  Per
lock: upstream requests (the fake upstream's counter) and bucket lookups and uploads (the replicas'
``wheelmeld_shared_*`` counters on ``/metrics``).

(3) moto's own pace: sequential HEAD and GET of a 1 KB object with boto3, ms per request.

Run: ``.venv/bin/python benchmarks/bench_fleet.py`` (``--help``; ``--quick`` for a smoke run).
Needs ``wrk``, ``nginx`` and ``redis-server`` (Debian packages) and the test extra (moto, redis).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import (
    BenchError,
    Server,
    WrkResult,
    exit_on_sigterm,
    machine,
    nginx,
    scratch_dir,
    spread,
    upstream,
    upstream_stats,
    wheelmeld,
    wrk,
)
from benchmarks.bench_uv_lock import LockFailed, uv_lock
from tests.deploy.tier import Nginx, find_nginx
from tests.e2e.e2ekit import seed_pyproject
from tests.support.fleet import fleet_toml
from tests.support.redis_server import RedisServer
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3

__all__ = ["main"]

_JSON = "application/vnd.pypi.simple.v1+json"
_PREFIX = "/whl/nightly/cu126"
_ONE = "1 replica, local disk"
_FLEET = "2 replicas on S3"
_TIER = "2 replicas on S3 behind nginx"
_STATIC = "nginx (static)"
_LOCK_ALTERNATE = "2 replicas on S3, cold on A, warm on B"
_LOCK_LEASES = "1 replica, local disk, Redis leases"
_buckets = itertools.count()


def _aws_env(workdir: Path) -> dict[str, str]:
    """moto's test credentials and nothing of the machine's (no profile, file or instance role)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class Fleet:
    replicas: list[Server]
    tier: Nginx | None

    def shared_counts(self) -> Counter[str]:
        """The replicas' ``wheelmeld_shared_<name>_total`` counters, summed over kinds and replicas."""
        counts: Counter[str] = Counter()
        for replica in self.replicas:
            text = httpx.get(replica.url + "/metrics", timeout=10).text
            for match in re.finditer(r"^wheelmeld_shared_(\w+)_total\{[^}]*\} (\S+)$", text, re.MULTILINE):
                counts[match.group(1)] += int(float(match.group(2)))
        return counts


@contextlib.contextmanager
def fleet(
    workdir: Path, routes: dict[str, str], moto: MotoS3, redis: RedisServer, *, tier: bool
) -> Iterator[Fleet]:
    """Two replicas on a new bucket of ``moto`` with leases on ``redis``, optionally behind nginx."""
    bucket = f"wheelmeld-bench-{next(_buckets)}"
    moto.client.create_bucket(Bucket=bucket)
    config = fleet_toml(workdir / f"{bucket}.toml", moto, bucket, redis, lease_ttl=30.0)
    args, env = ("--config", str(config)), _aws_env(workdir)
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(wheelmeld(workdir, routes, args=args, base_env=env)) for _ in "AB"]
        front = None
        if tier:
            binary = find_nginx()
            if binary is None:
                raise BenchError("nginx is not installed (apt-get install -y nginx)")
            ports = [urlsplit(r.url).port or 0 for r in replicas]
            front = stack.enter_context(Nginx(binary, ports, workdir / f"tier-{bucket}"))
        yield Fleet(replicas, front)


# -- (1) warm load -------------------------------------------------------------------------------


def _get(url: str, accept: str = "*/*") -> bytes:
    response = httpx.get(url, headers={"Accept": accept}, timeout=120)
    response.raise_for_status()
    return response.content


def _targets(base: str) -> dict[str, tuple[str, str | None]]:
    """label → (url, Accept) on one server: the torch page, one wheel's ``.metadata``, the wheel."""
    page = f"{base}{_PREFIX}/torch/"
    listing = httpx.get(page, headers={"Accept": _JSON}, timeout=120).json()
    wheel = next(f["filename"] for f in listing["files"] if f["filename"].endswith(".whl"))
    return {
        "page JSON": (page, _JSON),
        ".metadata": (f"{page}{wheel}.metadata", None),
        "wheel": (page + wheel, None),
    }


def _warm(targets: dict[str, tuple[str, str | None]]) -> None:
    for url, accept in targets.values():
        for _ in range(3):
            _get(url, accept or "*/*")


def _wrk_spread(urls: list[tuple[str, str | None]], seconds: float, connections: int) -> WrkResult:
    """One ``wrk`` per URL at the same time, connections split evenly: rates summed, worst p99."""
    share = max(1, connections // len(urls))
    with ThreadPoolExecutor(len(urls)) as pool:
        runs = list(
            pool.map(
                lambda target: wrk(
                    target[0], seconds=seconds, connections=share, threads=1, accept=target[1]
                ),
                urls,
            )
        )
    return WrkResult(
        rps=sum(r.rps for r in runs),
        p50_ms=max(r.p50_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (``/proc/<pid>/stat``)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class _Load:
    runs: list[WrkResult] = field(default_factory=list)
    replica_cpu: list[float] = field(default_factory=list)  # cores the replicas used during the run


# label → every replica's targets (a system spread over replicas has more than one); the replicas' pids
_Systems = dict[str, list[dict[str, tuple[str, str | None]]]]


def _load_systems(
    stack: contextlib.ExitStack, workdir: Path, up: Server, moto: MotoS3, redis: RedisServer
) -> tuple[_Systems, dict[str, list[int]]]:
    """Start every system of (1) on ``stack`` and warm it."""
    routes = {"/whl": up.url + "/whl"}
    one = stack.enter_context(wheelmeld(workdir, routes))
    systems: _Systems = {_ONE: [_targets(one.url)]}
    _warm(systems[_ONE][0])
    shared = stack.enter_context(fleet(workdir, routes, moto, redis, tier=True))
    assert shared.tier is not None
    systems[_FLEET] = [_targets(r.url) for r in shared.replicas]
    systems[_TIER] = [_targets(shared.tier.url)]
    root = Path(tempfile.mkdtemp(prefix="nginx-root-", dir=workdir))
    files = {"page JSON": "page.json", ".metadata": "file.metadata", "wheel": "file.whl"}
    for label, (url, accept) in systems[_ONE][0].items():
        (root / files[label]).write_bytes(_get(url, accept or "*/*"))
    static = stack.enter_context(nginx(workdir, root))
    systems[_STATIC] = [{label: (f"{static.url}/{name}", None) for label, name in files.items()}]
    for per_replica in systems.values():
        for targets in per_replica:
            _warm(targets)
    fleet_pids = [r.pid for r in shared.replicas]
    return systems, {_ONE: [one.pid], _FLEET: fleet_pids, _TIER: fleet_pids, _STATIC: []}


def _load(
    args: argparse.Namespace, workdir: Path, up: Server, moto: MotoS3, redis: RedisServer
) -> dict[str, dict[str, _Load]]:
    results: dict[str, dict[str, _Load]] = {}
    with contextlib.ExitStack() as stack:
        systems, pids = _load_systems(stack, workdir, up, moto, redis)
        for round_ in range(args.rounds):
            for name, per_replica in systems.items():
                for label in per_replica[0]:
                    urls = [targets[label] for targets in per_replica]
                    cpu, started = _cpu_seconds(pids[name]), time.perf_counter()
                    if len(urls) == 1:
                        url, accept = urls[0]
                        result = wrk(url, seconds=args.seconds, connections=args.connections, accept=accept)
                    else:
                        result = _wrk_spread(urls, args.seconds, args.connections)
                    cores = (_cpu_seconds(pids[name]) - cpu) / (time.perf_counter() - started)
                    cell = results.setdefault(name, {}).setdefault(label, _Load())
                    cell.runs.append(result)
                    cell.replica_cpu.append(cores)
                    print(
                        f"round {round_ + 1} {name:30} {label:10} {result.rps:8.0f} req/s "
                        f"p99 {result.p99_ms:.2f} ms errors {result.errors} replica cores {cores:.2f}",
                        file=sys.stderr,
                    )
    return results


# -- (2) uv lock ---------------------------------------------------------------------------------


@dataclass
class _Cell:
    seconds: list[float] = field(default_factory=list)
    upstream: list[int] = field(default_factory=list)
    lookups: list[int] = field(default_factory=list)  # bucket hits + misses
    uploads: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)  # bucket requests, from the counters
    failures: list[str] = field(default_factory=list)


# A lock system: a context manager yielding (cold index URL, warm index URL, the fleet or None).
_LockSystem = Callable[[Path], contextlib.AbstractContextManager[tuple[str, str, Fleet | None]]]


def _lock_systems(up: Server, moto: MotoS3) -> dict[str, _LockSystem]:
    routes = {"/whl": up.url + "/whl"}

    @contextlib.contextmanager
    def one(workdir: Path) -> Iterator[tuple[str, str, Fleet | None]]:
        with wheelmeld(workdir, routes) as server:
            yield server.url + _PREFIX, server.url + _PREFIX, None

    @contextlib.contextmanager
    def leased(workdir: Path) -> Iterator[tuple[str, str, Fleet | None]]:
        # The leases' share of the fleet's cold path, without the bucket.
        with RedisServer() as redis, wheelmeld(workdir, routes, args=("--redis-url", redis.url)) as server:
            yield server.url + _PREFIX, server.url + _PREFIX, None

    def two(tier: bool) -> _LockSystem:
        @contextlib.contextmanager
        def start(workdir: Path) -> Iterator[tuple[str, str, Fleet | None]]:
            with RedisServer() as redis, fleet(workdir, routes, moto, redis, tier=tier) as shared:
                if shared.tier is not None:
                    yield shared.tier.url + _PREFIX, shared.tier.url + _PREFIX, shared
                else:
                    a, b = shared.replicas
                    yield a.url + _PREFIX, b.url + _PREFIX, shared

        return start

    return {_ONE: one, _LOCK_LEASES: leased, _TIER: two(tier=True), _LOCK_ALTERNATE: two(tier=False)}


def _locks(args: argparse.Namespace, workdir: Path, up: Server, moto: MotoS3) -> dict[str, dict[str, _Cell]]:
    systems = _lock_systems(up, moto)
    cells = {name: {"cold": _Cell(), "warm": _Cell()} for name in systems}
    names = list(systems)
    for round_ in range(args.lock_rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            with systems[name](workdir) as (cold_url, warm_url, shared):
                for phase, url in (("cold", cold_url), ("warm", warm_url)):
                    cell = cells[name][phase]
                    before = upstream_stats(up)["requests"]
                    bucket = shared.shared_counts() if shared else Counter()
                    try:
                        seconds = uv_lock(workdir, seed_pyproject(url), args.timeout)
                    except LockFailed as exc:
                        cell.failures.append(str(exc))
                        print(f"round {round_ + 1} {name} {phase}: FAILED {exc}", file=sys.stderr)
                        continue
                    cell.seconds.append(seconds)
                    cell.upstream.append(upstream_stats(up)["requests"] - before)
                    delta = shared.shared_counts() - bucket if shared else Counter()
                    if shared:
                        cell.lookups.append(delta["hits"] + delta["misses"])
                        cell.uploads.append(delta["uploads"])
                        cell.requests.append(_bucket_requests(delta))
                    print(
                        f"round {round_ + 1} {name:40} {phase}: {seconds:.2f} s, "
                        f"upstream {cell.upstream[-1]}, bucket {dict(delta)}",
                        file=sys.stderr,
                    )
    return cells


def _bucket_requests(delta: Counter[str]) -> int:
    """S3 requests behind the counters, by ``proxy/cache/shared.py``'s calls for small objects: a
    miss reads the sha256 mark (1); a hit reads mark and object (2); an upload asks for the mark
    while it puts the object, then puts the mark (3), or only puts both when the object was seen
    missing under its lease (2: ``unasked``); a duplicate stops after the first two (2)."""
    uploads = 3 * delta["uploads"] - delta["unasked"]
    return delta["misses"] + 2 * delta["hits"] + uploads + 2 * delta["duplicate"]


# -- (3) moto's pace -----------------------------------------------------------------------------


def _moto_pace(moto: MotoS3, requests: int) -> dict[str, float]:
    """ms per sequential boto3 request on moto: what every bucket call of a replica waits at least."""
    bucket = f"wheelmeld-bench-{next(_buckets)}"
    moto.client.create_bucket(Bucket=bucket)
    moto.client.put_object(Bucket=bucket, Key="probe", Body=b"x" * 1024)
    out: dict[str, float] = {}
    for label, call in (
        ("HEAD 1 KB", lambda: moto.client.head_object(Bucket=bucket, Key="probe")),
        ("GET 1 KB", lambda: moto.client.get_object(Bucket=bucket, Key="probe")["Body"].read()),
        ("HEAD missing", lambda: _missing(moto, bucket)),
    ):
        started = time.perf_counter()
        for _ in range(requests):
            call()
        out[f"{label}, one at a time: ms each"] = (time.perf_counter() - started) * 1000 / requests
        with ThreadPoolExecutor(16) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _, call=call: call(), range(requests)))
        out[f"{label}, 16 at once: requests/s"] = requests / (time.perf_counter() - started)
    return out


def _missing(moto: MotoS3, bucket: str) -> None:
    with contextlib.suppress(moto.client.exceptions.ClientError):
        moto.client.head_object(Bucket=bucket, Key="absent")


# -- output --------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _print_load(results: dict[str, dict[str, _Load]], args: argparse.Namespace) -> None:
    print(
        f"\n### (1) warm page, `.metadata` and wheel: wrk, {args.connections} connections, "
        f"{args.seconds:g} s × {args.rounds} rounds, median (min–max)\n"
    )
    print(f"Machine: {machine()}\n")
    print("| system | target | req/s | p99 ms | errors | replica CPU, cores |")
    print("|---|---|---:|---:|---:|---:|")
    for name, targets in results.items():
        for label, cell in targets.items():
            cpu = spread(cell.replica_cpu) if name != _STATIC else "–"
            print(
                f"| {name} | {label} | {spread([r.rps for r in cell.runs], '{:.0f}')} | "
                f"{spread([r.p99_ms for r in cell.runs])} | {sum(r.errors for r in cell.runs)} | {cpu} |"
            )

    def rps(name: str, label: str) -> float:
        return _median([r.rps for r in results[name][label].runs])

    print("\nTargets:\n")
    for label in (".metadata", "wheel", "page JSON"):
        ratio = rps(_TIER, label) / rps(_STATIC, label)
        print(f"- nginx tier / nginx static, {label}: {ratio:.2f} (target ≥ 0.80: {_met(ratio >= 0.8)})")
    for name in (_TIER, _FLEET):
        ratio = rps(name, "page JSON") / rps(_ONE, "page JSON")
        print(f"- {name} / 1 replica, page JSON: {ratio:.2f}× (target ≥ 1.8×: {_met(ratio >= 1.8)})")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _print_locks(cells: dict[str, dict[str, _Cell]], args: argparse.Namespace) -> None:
    print(
        f"\n### (2) seed `uv lock`, {args.latency_ms:g} ms per upstream request, {args.lock_rounds} rounds, "
        "median (min–max)\n"
    )
    print(f"Machine: {machine()}\n")
    print(
        "| system | phase | seconds | upstream requests | bucket lookups | bucket uploads | bucket requests |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, phases in cells.items():
        for phase, cell in phases.items():
            columns = (cell.upstream, cell.lookups, cell.uploads, cell.requests)
            counts = [spread([float(x) for x in xs], "{:.0f}") for xs in columns]
            print(f"| {name} | {phase} | {spread(cell.seconds)} | {' | '.join(counts)} |")
            for failure in dict.fromkeys(cell.failures):
                print(f"\n- {name} {phase} failed: {failure}\n")
    base = _median(cells[_ONE]["cold"].seconds)
    for name in (_LOCK_LEASES, _TIER, _LOCK_ALTERNATE):
        ratio = _median(cells[name]["cold"].seconds) / base
        print(
            f"\n- cold lock, {name} / 1 replica local disk: {ratio:.2f}× "
            f"(target ≤ 1.2×: {_met(ratio <= 1.2)})"
        )


def _print_pace(pace: dict[str, float], requests: int) -> None:
    print(f"\n### (3) moto's pace: {requests} boto3 requests each\n")
    print("| request | value |")
    print("|---|---:|")
    for label, value in pace.items():
        print(f"| {label} | {value:.1f} |")


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds of (1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per (1) measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--lock-rounds", type=int, default=3, help="rounds of (2)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="injected per upstream request")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per uv lock")
    parser.add_argument("--probe", type=int, default=300, help="requests per (3) measurement")
    parser.add_argument("--only", choices=("load", "lock", "pace"), help="run one workload")
    parser.add_argument("--quick", action="store_true", help="1 round of each, 2 s wrk runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.quick:
        args.rounds, args.lock_rounds, args.seconds, args.probe = 1, 1, 2.0, 50
    print(f"start: {_uptime()}", file=sys.stderr)
    with scratch_dir(args.keep) as workdir, MotoS3() as moto:
        latency = ("--latency-ms", str(args.latency_ms))
        with upstream(workdir, "--fixture", "pytorch", *latency) as up:
            if args.only in (None, "load"):
                with RedisServer() as redis:
                    results = _load(args, workdir, up, moto, redis)
                _print_load(results, args)
                print(f"\nAfter (1): {_uptime()}")
            if args.only in (None, "lock"):
                cells = _locks(args, workdir, up, moto)
                _print_locks(cells, args)
                print(f"\nAfter (2): {_uptime()}")
        if args.only in (None, "pace"):
            _print_pace(_moto_pace(moto, args.probe), args.probe)
            print(f"\nAfter (3): {_uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
