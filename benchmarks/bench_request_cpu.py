"""Benchmark: CPU per warm request, in process, with no sockets (the ASGI app called directly).

``wrk`` numbers on this shared 2-core machine move by ±15% from run to run; the CPU one warm page or
``.metadata`` answer costs the app itself is steadier, but it is a hot loop: code that the real server
runs with cold caches between requests looks cheaper here, so trees that differ by 60% under ``wrk``
can measure alike (benchmarks/README.md). Use it for regressions within one tree, not as the proof.

The seed's PyTorch-shaped fake upstream runs in its own process; for this tree (and ``--baseline
DIR``), a child process builds the app with ``create_app``, runs its lifespan, warms the torch page
(JSON and HTML) and one melded ``.metadata``, then calls the app 3,000 times per target, best of 5,
with the access log on (to ``/dev/null``).

Run: ``.venv/bin/python benchmarks/bench_request_cpu.py [--baseline DIR] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import (
    add_baseline_option,
    exit_on_sigterm,
    machine,
    proxy_source,
    scratch_dir,
    upstream,
)

__all__ = ["main"]

_PREFIX = "/whl/nightly/cu126"
_JSON = "application/vnd.pypi.simple.v1+json"
_CALLS = 3000
_BEST_OF = 5


async def _measure(upstream_url: str) -> dict[str, float]:
    """µs of CPU per request for each target (runs inside the child, with the tree on sys.path)."""
    from proxy.config import Config, RouteConfig
    from proxy.server.app import create_app

    route = RouteConfig(prefix="/whl", upstream=upstream_url + "/whl")
    app = create_app(Config(cache_dir=Path(tempfile.mkdtemp(prefix="wm-cpu-")), routes=(route,)))

    async def call(path: str, accept: str) -> tuple[int, bytes]:
        sent: list[dict[str, object]] = []
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1"), (b"accept", accept.encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
        }  # fmt: skip

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
        return int(sent[0]["status"]), body  # type: ignore[call-overload]

    async with app.router.lifespan_context(app):
        page = f"{_PREFIX}/torch/"
        status, body = await call(page, _JSON)
        wheel = next(f["filename"] for f in json.loads(body)["files"] if f["filename"].endswith(".whl"))
        targets = {"page JSON": (page, _JSON), "page HTML": (page, "text/html")}
        targets[".metadata"] = (f"{page}{wheel}.metadata", "*/*")
        for label, (path, accept) in targets.items():
            status, _ = await call(path, accept)
            if status != 200:
                raise RuntimeError(f"{label}: {status}")
        best: dict[str, float] = {}
        for label, (path, accept) in targets.items():
            for _ in range(_BEST_OF):
                started = time.process_time()
                for _ in range(_CALLS):
                    await call(path, accept)
                per_call = (time.process_time() - started) / _CALLS * 1e6
                best[label] = min(best.get(label, per_call), per_call)
    return best


def _child(tree: Path, upstream_url: str) -> dict[str, float]:
    argv = [sys.executable, __file__, "--inner", upstream_url]
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{Path(__file__).resolve().parents[1]}"}
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="child runs per tree, interleaved")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    add_baseline_option(parser)
    args = parser.parse_args(argv)
    if args.inner:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=open(os.devnull, "w"))  # noqa: SIM115
        print(json.dumps(asyncio.run(_measure(args.inner))))
        return 0
    exit_on_sigterm()
    trees = {"wheelmeld": proxy_source()}
    if args.baseline:
        trees["wheelmeld baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with scratch_dir(False) as workdir, upstream(workdir, "--fixture", "pytorch") as up:
        for round_ in range(args.repeat):
            for name, tree in trees.items():
                runs[name].append(_child(tree, up.url))
                print(f"round {round_ + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    print(
        f"\n### CPU per warm request, in process, best of {_BEST_OF} × {_CALLS} calls, {args.repeat} runs\n"
    )
    print(f"Machine: {machine()}\n")
    print("| tree | target | µs CPU per request, min (all runs) |")
    print("|---|---|---|")
    for name, results in runs.items():
        for label in results[0]:
            values = sorted(r[label] for r in results)
            print(f"| {name} | {label} | {values[0]:.1f} ({', '.join(f'{v:.1f}' for v in values)}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
