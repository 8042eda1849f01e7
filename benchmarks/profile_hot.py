"""Profile the hottest path: warm page (HTML, JSON) and warm ``.metadata`` under ``wrk`` load.

Starts the seed's PyTorch-shaped fake upstream and ``wheelmeld serve --workers 1`` on 127.0.0.1,
warms the torch project page and one torch wheel's melded ``.metadata``, then for each target runs
``wrk`` (16 connections) while ``py-spy record`` samples the proxy process.  Then the same for a
cold file (``--stream-mb``, sparse, from the fake upstream) streamed to 10 curl clients at once.
Prints, per target, the self time per layer (h11, starlette, wheelmeld, ...) and the functions with
the most samples on the stack (inclusive) and at the top of it (self), as shares of all samples.

py-spy is a benchmark-only tool: it is looked up on PATH, then in the proxpi venv
(``uv pip install py-spy`` into any venv).  Sampling needs ptrace rights (root or
``CAP_SYS_PTRACE``).

Run: ``.venv/bin/python benchmarks/profile_hot.py`` (``--seconds``, ``--top``, ``--keep`` to keep
the raw collapsed stacks).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import PROXPI_VENV, BenchError, exit_on_sigterm, machine, upstream, wheelmeld, wrk

__all__ = ["layer_of", "layers", "main", "summarize"]

_JSON = "application/vnd.pypi.simple.v1+json"
_PREFIX = "/whl/nightly/cu126"
# "function (path/to/file.py:123)" -> function and the file's last two path parts.
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(PROXPI_VENV / "bin" / "py-spy")
    if not Path(found).exists():
        raise BenchError("py-spy not found (uv pip install py-spy into any venv, or put it on PATH)")
    return found


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    parts = Path(match.group("file")).parts
    return f"{match.group('func')} ({'/'.join(parts[-2:])})"


# Where a sample's innermost frame lives -> the layer it is charged to (first match wins).
_LAYERS = (
    ("/logging/", "logging (access log lines)"),
    ("/futures/", "thread pool (to_thread hops, file I/O, hashing in C)"),
    ("/threading.py", "thread pool (to_thread hops, file I/O, hashing in C)"),
    ("/httpx/", "httpx/httpcore (upstream client)"),
    ("/httpcore/", "httpx/httpcore (upstream client)"),
    ("/anyio/", "httpx/httpcore (upstream client)"),
    ("/h11/", "h11 (HTTP/1.1 parse + serialize)"),
    ("/uvicorn/", "uvicorn (protocol, middleware)"),
    ("/starlette/", "starlette (routing, middleware, Response)"),
    ("/proxy/", "wheelmeld (proxy/*)"),
    ("/asyncio/", "asyncio (loop, transports, socket I/O)"),
    ("/selectors.py", "asyncio (loop, transports, socket I/O)"),
)


def layer_of(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = "/" + (match.group("file") if match else frame)
    for needle, layer in _LAYERS:
        if needle in path:
            return layer
    return "other"


def layers(collapsed: str) -> list[tuple[str, float]]:
    """Share of samples whose innermost frame is in each layer, largest first."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            counts[layer_of(stack.split(";")[-1])] += int(count_text)
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def summarize(collapsed: str, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, top inclusive and top self functions of py-spy's collapsed stacks.

    py-spy records active (non-idle) threads only, which under load is the event loop thread.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = [_short(f) for f in stack.split(";")]
        for name in set(names):
            inclusive[name] += count
        if names:
            self_[names[-1]] += count
    return total, inclusive.most_common(top), self_.most_common(top)


def _record(spy: str, pid: int, seconds: int, rate: int, raw: Path, load: Callable[[], str]) -> str:
    """Run ``load`` while py-spy samples ``pid``; returns what ``load`` says about itself."""
    argv = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    argv += ["--format", "raw", "--nonblocking", "-o", str(raw)]
    spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said = load()
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if spy_proc.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return said


def _report(label: str, said: str, raw: Path, top: int, keep: Path | None) -> None:
    text = raw.read_text()
    total, inclusive, self_ = summarize(text, top)
    print(f"#### {label}: {said} under py-spy ({total} samples)\n")
    print("Self time by layer: " + ", ".join(f"{name} {share:.0f}%" for name, share in layers(text)))
    print()
    print("| inclusive % | function | | self % | function |")
    print("|---:|---|---|---:|---|")
    for (iname, icount), (sname, scount) in zip(inclusive, self_, strict=False):
        ishare, sshare = 100 * icount / total, 100 * scount / total
        print(f"| {ishare:.1f} | `{iname}` | | {sshare:.1f} | `{sname}` |")
    print()
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, keep / raw.name)


def _stream(spy: str, args: argparse.Namespace, workdir: Path) -> None:
    """Profile a cold file streamed to 10 curl clients (the proxy downloads, hashes, fans out)."""
    body = workdir / "big-1.0-py3-none-any.whl"
    with body.open("wb") as fh:
        fh.truncate(args.stream_mb * 1024 * 1024)
    with (
        upstream(workdir, "--big-file", str(body)) as up,
        wheelmeld(workdir, {"/simple": up.url + "/simple"}) as wm,
    ):
        httpx.get(f"{up.url}/simple/big/", timeout=300).raise_for_status()  # upstream hashes it once
        httpx.get(f"{wm.url}/simple/big/", timeout=60).raise_for_status()
        url = f"{wm.url}/simple/big/{body.name}"

        def load() -> str:
            started = time.perf_counter()
            curls = [
                subprocess.Popen(["curl", "-s", "-o", "/dev/null", url], stdin=subprocess.DEVNULL)
                for _ in range(10)
            ]
            for curl in curls:
                curl.wait(timeout=900)
            mb_s = args.stream_mb / (time.perf_counter() - started)
            return f"cold {args.stream_mb} MB file to 10 clients, {mb_s:.0f} MB/s per client"

        raw = workdir / "stream.txt"
        said = _record(spy, wm.pid, args.seconds, args.rate, raw, load)
        _report("stream", said, raw, args.top, args.keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="directory to keep the raw collapsed stacks in")
    parser.add_argument(
        "--stream-mb",
        type=int,
        default=1024,
        help="also profile a cold file of this size to 10 clients (0: skip)",
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()
    spy = _py_spy()
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="wm-profile-") as tmp:
        workdir = Path(tmp)
        with (
            upstream(workdir, "--fixture", "pytorch") as up,
            wheelmeld(workdir, {_PREFIX: up.url + _PREFIX}) as wm,
        ):
            page = f"{wm.url}{_PREFIX}/torch/"
            listing = httpx.get(page, headers={"Accept": _JSON}, timeout=60).json()
            wheel = next(f["filename"] for f in listing["files"] if f["filename"].endswith(".whl"))
            targets = {"page-html": (page, "text/html"), "page-json": (page, _JSON)}
            targets["metadata"] = (f"{page}{wheel}.metadata", None)
            for url, accept in targets.values():
                httpx.get(url, headers={"Accept": accept or "*/*"}, timeout=60).raise_for_status()
            for label, (url, accept) in targets.items():
                raw = workdir / f"{label}.txt"

                def load(url: str = url, accept: str | None = accept) -> str:
                    return f"{wrk(url, seconds=args.seconds, accept=accept).rps:.0f} req/s"

                said = _record(spy, wm.pid, args.seconds, args.rate, raw, load)
                _report(label, said, raw, args.top, args.keep)
        if args.stream_mb:
            _stream(spy, args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
