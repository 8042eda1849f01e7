"""Shared plumbing for the side-by-side benchmarks (issue 7): start servers on 127.0.0.1, measure, print.

Every server under test runs as its own process so the driver (this process) never shares a GIL
with what it measures: wheelmeld (``python -m proxy serve``), the fake upstream (``_upstream.py``),
nginx (Debian package, the static-file ceiling) and proxpi (a separate venv, benchmark-only).
Load comes from ``wrk``; ``uv`` is the client of the lock workloads.  Nothing here touches a
network beyond 127.0.0.1 unless a script's ``--live`` mode hands it a real index URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "PROXPI_VENV",
    "REPO",
    "BenchError",
    "Server",
    "WrkResult",
    "add_baseline_option",
    "exit_on_sigterm",
    "free_port",
    "machine",
    "nginx",
    "peak_rss_mb",
    "proxpi",
    "proxy_source",
    "spread",
    "upstream",
    "wait_http",
    "wheelmeld",
    "wrk",
]

REPO = Path(__file__).resolve().parents[1]
# proxpi lives in its own venv: it is a peer we measure, never a dependency of wheelmeld.
PROXPI_VENV = Path(os.environ.get("WHEELMELD_BENCH_PROXPI_VENV", "/tmp/proxpi-venv"))
_JSON = "application/vnd.pypi.simple.v1+json"


class BenchError(RuntimeError):
    """A server would not start or a tool is missing."""


@dataclass
class Server:
    """A running server process: its base URL, pid, and where its output goes."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    stats_url: str = ""  # the fake upstream's counters

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            # The process group: uvicorn --workers and gunicorn fork workers we must not orphan.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, ``kill``) into SystemExit so every started server is stopped."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def proxy_source() -> Path:
    """The tree whose ``proxy`` package is measured: this checkout, or ``WHEELMELD_BENCH_SOURCE``
    (e.g. ``git archive HEAD | tar -x -C /tmp/wm-head`` to measure the last commit while others edit)."""
    return Path(os.environ.get("WHEELMELD_BENCH_SOURCE", REPO)).resolve()


@contextlib.contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    """A scratch directory for one benchmark run; ``keep`` leaves it (and its server logs) behind."""
    if keep:
        yield Path(tempfile.mkdtemp(prefix="wm-bench-"))
    else:
        with tempfile.TemporaryDirectory(prefix="wm-bench-") as tmp:
            yield Path(tmp)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers (any status) or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited ({proc.returncode}); log {log}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2.0)
            return
        time.sleep(0.05)
    raise BenchError(f"{url!r} did not answer within {timeout:.0f} s; log {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group, so stop() reaches the workers too
        )
    return proc, log


@contextlib.contextmanager
def wheelmeld(
    workdir: Path,
    routes: Mapping[str, str],
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    source: Path | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """``python -m proxy serve`` with ``routes`` ({prefix: upstream}); a fresh cache unless given one;
    ``env``: ``WHEELMELD_*`` settings on top of the defaults.

    ``args``: more ``serve`` flags (e.g. ``--config fleet.toml``); ``base_env``: the environment to
    start from instead of ours (``env`` still goes on top).

    ``source``: the tree whose ``proxy`` package runs (default ``proxy_source()``); a ``--baseline``
    tree is named "wheelmeld wN baseline", so a change and its parent are measured in one run.
    """
    port = free_port()
    cache = cache_dir or Path(tempfile.mkdtemp(prefix="wm-cache-", dir=workdir))
    argv = [sys.executable, "-m", "proxy", "serve", "--port", str(port), "--cache-dir", str(cache)]
    argv += ["--workers", str(workers)]
    for prefix, url in routes.items():
        argv += ["--route", f"{prefix}={url}"]
    argv += list(args)
    tree = (source or proxy_source()).resolve()
    environ = {**(os.environ if base_env is None else base_env), "PYTHONPATH": str(tree), **(env or {})}
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        environ.pop(var, None)
    tag = "-baseline" if source is not None else ""
    # cwd too: ``python -m`` puts the working directory first on sys.path.
    proc, log = _spawn(f"wheelmeld-w{workers}{tag}-{port}", argv, workdir, environ, cwd=tree)
    name = f"wheelmeld w{workers}" + (" baseline" if source is not None else "")
    server = Server(name, f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(server.url + "/healthz", proc, log)
        yield server
    finally:
        server.stop()


def add_baseline_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure the proxy package of this tree, side by side (e.g. the parent commit: "
        "mkdir /tmp/base && git archive HEAD~1 | tar -x -C /tmp/base)",
    )


@contextlib.contextmanager
def upstream(workdir: Path, *args: str) -> Iterator[Server]:
    """The fake upstream (``benchmarks/_upstream.py``) in its own process, with its stats port."""
    port, stats_port = free_port(), free_port()
    argv = [sys.executable, str(REPO / "benchmarks" / "_upstream.py"), "--port", str(port)]
    argv += ["--stats-port", str(stats_port), *args]
    proc, log = _spawn(f"upstream-{port}", argv, workdir, {**os.environ, "PYTHONPATH": str(REPO)})
    server = Server("upstream", f"http://127.0.0.1:{port}", proc, log, f"http://127.0.0.1:{stats_port}/")
    try:
        wait_http(server.stats_url, proc, log, timeout=120)
        wait_http(server.url + "/", proc, log)
        yield server
    finally:
        server.stop()


def upstream_stats(server: Server) -> dict[str, int]:
    """Requests and body bytes the fake upstream has sent so far."""
    stats: dict[str, int] = httpx.get(server.stats_url, timeout=10).json()
    return stats


@contextlib.contextmanager
def nginx(workdir: Path, root: Path) -> Iterator[Server]:
    """nginx serving ``root`` as static files; ``*.json`` as the PEP 691 type (the ceiling)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise BenchError("nginx is not installed (apt-get install -y nginx)")
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
    (prefix / "logs").mkdir()
    conf = prefix / "nginx.conf"
    # As root, nginx's workers would drop to www-data and could not read our private temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""{user}worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  types {{ text/html html; {_JSON} json; text/plain metadata; }}
  default_type application/octet-stream;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location = /healthz {{ return 200 "ok\\n"; }}
  }}
}}
"""
    )
    proc, log = _spawn("nginx", [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], workdir)
    server = Server("nginx", f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(server.url + "/healthz", proc, log)
        yield server
    finally:
        server.stop()


def proxpi_available() -> str | None:
    """Why proxpi cannot run here, or ``None`` when it can."""
    if not (PROXPI_VENV / "bin" / "gunicorn").exists():
        return (
            f"no proxpi venv at {PROXPI_VENV} (create it: uv venv {PROXPI_VENV} && "
            f"VIRTUAL_ENV={PROXPI_VENV} uv pip install proxpi gunicorn)"
        )
    return None


@contextlib.contextmanager
def proxpi(workdir: Path, index_url: str, *, threads: int = 8) -> Iterator[Server]:
    """proxpi 1.x under gunicorn as its Docker image runs it (one process, threads), fresh cache.

    Its pages live under ``/index/``.
    """
    why = proxpi_available()
    if why:
        raise BenchError(why)
    port = free_port()
    cache = Path(tempfile.mkdtemp(prefix="proxpi-cache-", dir=workdir))
    env = {
        **os.environ,
        "PROXPI_INDEX_URL": index_url,
        "PROXPI_CACHE_DIR": str(cache),
        "PROXPI_LOGGING_LEVEL": "WARNING",
    }
    argv = [str(PROXPI_VENV / "bin" / "gunicorn"), "--preload", "--threads", str(threads)]
    argv += ["--bind", f"127.0.0.1:{port}", "proxpi.server:app"]
    proc, log = _spawn(f"proxpi-{port}", argv, workdir, env)
    server = Server("proxpi", f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(server.url + "/health", proc, log)
        yield server
    finally:
        server.stop()


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of ``pid`` and all its descendants, in MB."""
    total = 0
    for one in (pid, *_descendants(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in children:
                out += [int(child), *_descendants(int(child))]
    return out


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, *, seconds: float = 10, connections: int = 16, threads: int = 2, accept: str | None = None
) -> WrkResult:
    """Run ``wrk --latency`` and parse requests/s, p50, p99 and non-2xx/socket errors."""
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    argv = [
        binary,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--latency",
    ]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _latency(out, "50%")
    p99 = _latency(out, "99%")
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return WrkResult(rps, p50, p99, errors)


def _latency(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        raise BenchError(f"no {label} latency in wrk output:\n{out}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min–max)``: how every table reports repeated rounds."""
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def machine() -> str:
    """One line naming the machine, for every table's header."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{date}; nproc={os.cpu_count()}; {cpu}; Python {platform.python_version()}"


def dump_json(path: Path | None, data: object) -> None:
    """Raw numbers for whoever wants more than the table."""
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str))
