"""The fake upstream index of the benchmarks, run as its own process (``tests.support.upstream``).

Kinds: ``--fixture pytorch`` (the seed's PyTorch-shaped index, as the ``pytorch_upstream`` test
fixture serves it), ``--page-sizes 10,100,...`` (one project ``p<N>`` per size, N tiny files in
releases of 20 wheels, PEP 691 JSON and HTML) and ``--big-file PATH`` (project ``big`` with one
wheel streamed from disk).  ``GET /-/stats`` answers the requests and body bytes sent so far, so a
driver in another process can count what the proxy cost the upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_index import FIXTURES_DIR, FakeFile, FakeIndex
from tests.support.upstream import UpstreamOptions, UpstreamServer

__all__ = ["big_file_index", "main", "sized_index"]

# Tags of one release on a nightly page: every wheel has a sibling set like this.
_TAGS = tuple(
    f"{py}-{py}-{plat}"
    for py in ("cp310", "cp311", "cp312", "cp313", "cp313t")
    for plat in ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_11_0_arm64")
)


class _CountingUpstream(UpstreamServer):
    """The fake upstream plus ``/-/stats`` (the request log lives in this process).

    ``nodelay``: the test server binds a plain ``socket.socket()`` (proto 0), so asyncio never sets
    TCP_NODELAY on accepted connections and every keep-alive response waits ~40 ms for the
    client's delayed ACK (headers and body are two writes).  Real upstreams do not behave like
    that, so by default the listener gets TCP_NODELAY, which Linux copies to accepted sockets.
    """

    def __init__(self, *args: object, nodelay: bool = True, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._nodelay = nodelay

    def start(self) -> _CountingUpstream:
        super().start()
        if self._nodelay and self._socket is not None:
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def _endpoint(self, request: Request) -> Response:  # type: ignore[override]
        if request.url.path == "/-/stats":
            records = self.log.requests_for("")
            body = {"requests": len(records), "bytes": self.log.bytes_sent_total("")}
            return JSONResponse(body)
        return await super()._endpoint(request)  # type: ignore[return-value]


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
    parser.add_argument("--fixture", choices=("pytorch",))
    parser.add_argument("--page-sizes", help="comma-separated file counts")
    parser.add_argument("--big-file", type=Path)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--nagle",
        action="store_true",
        help="keep the test server's Nagle delay (~40 ms per keep-alive request)",
    )
    args = parser.parse_args(argv)
    if args.fixture == "pytorch":
        index = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
        # Exactly the test suite's pytorch_upstream options, plus the injected latency.
        options = UpstreamOptions(
            format="html",
            pep658=False,
            ranges=True,
            hashes=False,
            link_style="relative",
            prefix="/whl/nightly/cu126",
            latency_ms=args.latency_ms,
        )
    elif args.page_sizes:
        index = sized_index([int(s) for s in args.page_sizes.split(",")])
        options = UpstreamOptions(format="json", prefix="/simple", latency_ms=args.latency_ms)
    elif args.big_file:
        index = big_file_index(args.big_file)
        options = UpstreamOptions(format="json", prefix="/simple", latency_ms=args.latency_ms)
    else:
        parser.error("give --fixture, --page-sizes or --big-file")
    with _CountingUpstream(index, options, port=args.port, nodelay=not args.nagle) as up:
        print(f"fake upstream serving {up.index_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
