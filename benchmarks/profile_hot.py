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

``--cold-lock`` (opt-in: it uses the real default index) profiles one cold ``uv lock`` of workload
(a) instead, sampling only the thread that holds the GIL, and charges each sample to the innermost
wheelmeld function on its stack (and the library it was in): where a cold lock's Python CPU goes.

Run: ``.venv/bin/python benchmarks/profile_hot.py`` (``--seconds``, ``--top``, ``--keep`` to keep
the raw collapsed stacks; ``--cold-lock``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import PROXPI_VENV, BenchError, exit_on_sigterm, machine, upstream, wheelmeld, wrk
from benchmarks.bench_uv_lock import live_pyproject, uv_lock
from proxy.default_index import discover_default_index

__all__ = ["charged", "layer_of", "layers", "main", "summarize"]

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
    ("/h2/", "httpx/httpcore (upstream client)"),
    ("/hpack/", "httpx/httpcore (upstream client)"),
    ("/hyperframe/", "httpx/httpcore (upstream client)"),
    ("/ssl.py", "ssl (TLS records, C)"),
    ("/json/", "json (parse and dump, C)"),
    ("/pathlib.py", "pathlib and tempfile (cache file names)"),
    ("/tempfile.py", "pathlib and tempfile (cache file names)"),
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


def _stacks(collapsed: str) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first; sample count) of each line of py-spy's collapsed stacks."""
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield [frame.strip() for frame in stack.split(";")], int(count_text)


def layers(collapsed: str) -> list[tuple[str, float]]:
    """Share of samples whose innermost frame is in each layer, largest first."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, count in _stacks(collapsed):
        counts[layer_of(frames[-1])] += count
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def summarize(collapsed: str, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, top inclusive and top self functions of py-spy's collapsed stacks.

    py-spy records active (non-idle) threads only, which under load is the event loop thread.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(collapsed):
        total += count
        names = [_short(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        if names:
            self_[names[-1]] += count
    return total, inclusive.most_common(top), self_.most_common(top)


def charged(collapsed: str, top: int) -> tuple[int, list[tuple[str, int]]]:
    """Samples charged to the innermost wheelmeld frame of their stack, and to the library it called.

    Where "self time" splits one job over dozens of library functions (httpx, h2, anyio, json),
    this says which of our own functions spent it: ``_read_ranges -> httpcore`` is the HTTP client
    working for a range read.
    """
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(collapsed):
        total += count
        ours = [f for f in frames if (m := _FRAME.match(f)) and "proxy/" in m.group("file")]
        if not ours:
            counts[f"(no wheelmeld frame) {layer_of(frames[-1])}"] += count
            continue
        label = _short(ours[-1])
        if frames[-1] != ours[-1]:
            label += f" -> {layer_of(frames[-1]).split(' (')[0]}"
        counts[label] += count
    return total, counts.most_common(top)


def _record(
    spy: str, pid: int, seconds: int, rate: int, raw: Path, load: Callable[[], str], gil: bool = False
) -> str:
    """Run ``load`` while py-spy samples ``pid``; returns what ``load`` says about itself.

    ``gil``: sample only the thread holding the GIL, i.e. Python CPU (a cold lock waits a lot).
    """
    argv = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    argv += ["--format", "raw", "--nonblocking", "-o", str(raw)]
    if gil:
        argv.append("--gil")
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


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cold_lock(spy: str, args: argparse.Namespace, workdir: Path) -> None:
    """Profile one cold ``uv lock`` of workload (a) through ``wheelmeld --workers 1`` (the real index)."""
    index = discover_default_index().url.rstrip("/")
    with wheelmeld(workdir, {"/simple": index}) as wm:

        def load() -> str:
            before = _cpu_seconds(wm.pid)
            seconds = uv_lock(workdir, live_pyproject(wm.url + "/simple/"), 120)
            user, system = (a - b for a, b in zip(_cpu_seconds(wm.pid), before, strict=True))
            return f"cold uv lock {seconds:.2f} s, proxy CPU {user:.2f} s user + {system:.2f} s system"

        raw = workdir / "cold-lock.txt"
        said = _record(spy, wm.pid, args.lock_seconds, args.rate, raw, load, gil=True)
    total, rows = charged(raw.read_text(), args.top)
    print(f"#### cold live lock: {said}; {total} GIL samples at {args.rate}/s\n")
    print("| share of Python CPU | charged to (innermost wheelmeld frame -> library it was in) |")
    print("|---:|---|")
    for label, count in rows:
        print(f"| {100 * count / total:.1f}% | `{label}` |")
    print()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, args.keep / raw.name)


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
    parser.add_argument(
        "--cold-lock",
        action="store_true",
        help="only profile one cold uv lock of workload (a) against the real default index (opt-in)",
    )
    parser.add_argument("--lock-seconds", type=int, default=15, help="py-spy duration for --cold-lock")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    spy = _py_spy()
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="wm-profile-") as tmp:
        workdir = Path(tmp)
        if args.cold_lock:
            _cold_lock(spy, args, workdir)
            return 0
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
