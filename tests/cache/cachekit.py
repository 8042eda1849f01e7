"""Helpers for the cache tests: a ``wheelmeld serve`` subprocess, metric and cache-dir readers, indexes.

The subprocess runs exactly what a user runs (``python -m proxy serve``), so ``--workers`` and
``kill -9`` act on real processes; its environment drops every ``WHEELMELD_*`` and outbound-proxy
variable, so only the flags a test passes steer it, and it only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import wheel

__all__ = [
    "REPO",
    "ServeProcess",
    "backend_flags",
    "cache_files",
    "disagreeing_release",
    "free_port",
    "holding_child",
    "metric",
    "serve_process",
    "tmp_leftovers",
]

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def holding_child(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``python -c code args`` in another process, once it has printed ``held`` (it holds its locks
    or leases then); killed with SIGKILL at the end of the block, so it never releases them itself."""
    with subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.kill()
            holder.wait(timeout=10)


_START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WHEELMELD_", "UV_", "PIP_")) and not k.lower().endswith("_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass(slots=True)
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL to the whole process group (the server and any workers): no cleanup runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


@contextmanager
def serve_process(
    cache_dir: Path, routes: dict[str, str], *args: str, port: int | None = None, log_path: Path | None = None
) -> Iterator[ServeProcess]:
    """``python -m proxy serve --route ... --cache-dir ... <args>``, ready (``/healthz``) when yielded."""
    port = port or free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--port", str(port), "--cache-dir", str(cache_dir)]
    for prefix, upstream in routes.items():
        argv += ["--route", f"{prefix}={upstream}"]
    argv += list(args)
    log_path = log_path or cache_dir.with_name(cache_dir.name + f"-serve-{port}.log")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, cwd=REPO, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = ServeProcess(process, port, log_path)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"wheelmeld serve exited {process.returncode}:\n{served.log()}")
            try:
                status = httpx.get(served.url + "/healthz", timeout=1).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            if status is not None:
                raise RuntimeError(f"wheelmeld serve answered /healthz with {status}:\n{served.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"wheelmeld serve did not start:\n{served.log()}")
            time.sleep(0.05)
        yield served
    finally:
        served.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    for line in text.splitlines():
        match = re.match(pattern, line)
        if match:
            return float(match.group(1))
    return 0.0


def cache_files(cache_dir: Path, name: str) -> list[Path]:
    """Committed copies of ``name`` anywhere under the cache's ``v1/``."""
    return sorted(p for p in (cache_dir / "v1").rglob(name) if p.is_file())


def tmp_leftovers(cache_dir: Path) -> list[Path]:
    tmp = cache_dir / "tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def disagreeing_release(siblings: int = 6) -> tuple[FakeIndex, list[FakeFile]]:
    """``meldy 1.0``: wheels for several platforms whose Requires-Dist differ, so serving any one
    ``.metadata`` needs every sibling's metadata (a real meld, no shortcut)."""
    platforms: Sequence[str] = (
        "manylinux_2_28_x86_64",
        "manylinux_2_28_aarch64",
        "win_amd64",
        "macosx_11_0_arm64",
        "musllinux_1_2_x86_64",
        "win_arm64",
    )[:siblings]
    files = [
        wheel(f"meldy-1.0-cp311-cp311-{plat}.whl", ["common>=1", f"only-{i}==1.0"])
        for i, plat in enumerate(platforms)
    ]
    return FakeIndex.from_files({"meldy": files}), files


def backend_flags(backend: dict[str, Any]) -> list[str]:
    """The ``wheelmeld serve`` flags of a backend's settings (the ``backend`` fixture's)."""
    return [arg for field, value in backend.items() for arg in ("--" + field.replace("_", "-"), str(value))]
