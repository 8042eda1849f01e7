"""The fake upstream index of the benchmarks, run as its own process (``tests.support.upstream``).

Kinds: ``--fixture pytorch`` (the seed's PyTorch-shaped index, as the ``pytorch_upstream`` test
fixture serves it), ``--page-sizes 10,100,...`` (one project ``p<N>`` per size, N tiny files in
releases of 20 wheels, PEP 691 JSON and HTML) and ``--big-file PATH`` (project ``big`` with one
wheel streamed from disk).  ``GET /`` on ``--stats-port`` answers the requests and body bytes sent
so far, so a driver in another process can count what the proxy cost the upstream.  Only the test
support's public API is used (``UpstreamServer(index, options, port=)``, ``.log``), so its
internals may change under us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_index import FIXTURES_DIR, FakeFile, FakeIndex
from tests.support.upstream import PYTORCH_OPTIONS, UpstreamOptions, UpstreamServer

__all__ = ["big_file_index", "main", "sized_index"]

# Tags of one release on a nightly page: every wheel has a sibling set like this.
_TAGS = tuple(
    f"{py}-{py}-{plat}"
    for py in ("cp310", "cp311", "cp312", "cp313", "cp313t")
    for plat in ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_11_0_arm64")
)


def _nodelay_everywhere() -> None:
    """TCP_NODELAY on every accepted TCP connection of this process.

    The test server binds a plain ``socket.socket()`` (proto 0), so asyncio's check
    (``proto == IPPROTO_TCP``) never sets TCP_NODELAY and every keep-alive response (headers, then
    body: two writes) waits ~40 ms for the client's delayed ACK.  Real upstreams do not behave like
    that; this process is only the benchmark's upstream, so the check is relaxed here.
    """

    def set_nodelay(sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    asyncio.base_events._set_nodelay = set_nodelay  # type: ignore[attr-defined]


def _serve_stats(up: UpstreamServer, port: int) -> ThreadingHTTPServer:
    """``GET /`` on ``port``: requests and body bytes the upstream sent so far, as JSON."""

    class Stats(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"requests": len(up.log.requests_for("")), "bytes": up.log.bytes_sent_total("")}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per poll would drown the upstream's log

    server = ThreadingHTTPServer(("127.0.0.1", port), Stats)
    threading.Thread(target=server.serve_forever, name="stats", daemon=True).start()
    return server


def sized_index(sizes: list[int]) -> FakeIndex:
    """Project ``p<N>`` with N files; hashes given up front so rendering never reads a body."""
    projects: dict[str, list[FakeFile]] = {}
    for size in sizes:
        files = []
        for i in range(size):
            version, tag = divmod(i, len(_TAGS))
            name = f"p{size}-1.{version}.0-{_TAGS[tag]}.whl"
            files.append(
                FakeFile(
                    filename=name,
                    content=b"x",
                    hashes={"sha256": hashlib.sha256(name.encode()).hexdigest()},
                    requires_python=">=3.10",
                    upload_time="2025-01-16T00:00:00.000000Z",
                )
            )
        projects[f"p{size}"] = files
    return FakeIndex.from_files(projects)


def big_file_index(path: Path) -> FakeIndex:
    """One wheel whose body is the file at ``path`` (its sha256 is computed on the first page)."""
    return FakeIndex.from_files({"big": [FakeFile(filename="big-1.0-py3-none-any.whl", path=path)]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    parser.add_argument("--fixture", choices=("pytorch",))
    parser.add_argument("--page-sizes", help="comma-separated file counts")
    parser.add_argument("--big-file", type=Path)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--unadvertised-pep658",
        action="store_true",
        help="serve <file>.metadata without advertising it on pages (as many mirrors do)",
    )
    parser.add_argument(
        "--nagle",
        action="store_true",
        help="keep the test server's Nagle delay (~40 ms per keep-alive request)",
    )
    args = parser.parse_args(argv)
    if args.fixture == "pytorch":
        index = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
        # Exactly the test suite's pytorch_upstream options, plus the injected latency.
        options = dataclasses.replace(
            PYTORCH_OPTIONS,
            latency_ms=args.latency_ms,
            pep658=args.unadvertised_pep658,
            advertise_pep658=not args.unadvertised_pep658,
        )
    elif args.page_sizes:
        index = sized_index([int(s) for s in args.page_sizes.split(",")])
        options = UpstreamOptions(format="json", prefix="/simple", latency_ms=args.latency_ms)
    elif args.big_file:
        index = big_file_index(args.big_file)
        options = UpstreamOptions(format="json", prefix="/simple", latency_ms=args.latency_ms)
    else:
        parser.error("give --fixture, --page-sizes or --big-file")
    if not args.nagle:
        _nodelay_everywhere()
    with UpstreamServer(index, options, port=args.port) as up:
        stats = _serve_stats(up, args.stats_port)
        print(f"fake upstream serving {up.index_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        stats.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
