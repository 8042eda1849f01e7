"""Benchmark: async S3 clients on the object store's workload, against moto's S3 server on 127.0.0.1.

The cache keeps many small immutable objects (a wheel's ``.metadata``, a meld, ~1 KB) and some
large ones (wheels, up to GBs, written as they stream in from upstream). For each candidate this
measures, in a process of its own (so peak memory is that client's alone):

* 1 KB objects: ``--small`` puts, then as many gets, ``--concurrency`` at once: wall time and the
  client process's CPU per request (the server's CPU is not counted: moto runs in another process);
* one ``--large-mb`` object put from an async stream of 1 MiB chunks (a multipart upload in
  8 MiB parts), then read back as a stream: wall time, CPU and the process's peak RSS.

Candidates: obstore (Rust object_store behind a thin Python layer) and aiobotocore (botocore on
aiohttp, what aioboto3 wraps); then ``proxy.cache.s3`` itself (aiobotocore, verifying what it
streams). Run from the repository root with obstore installed beside the test extra
(``pip install -e '.[test]' obstore``)::

    python benchmarks/bench_s3_clients.py [--small 500] [--concurrency 16] [--large-mb 200]

moto is slow itself (a Python server): wall times are moto's more than the client's; the CPU
columns are the client's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.s3_server import MotoS3

__all__ = ["main"]

_BUCKET = "wheelmeld-bench"
_MIB = 1024 * 1024
_PART = 8 * _MIB
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _rss_mib() -> float:
    """Peak resident memory of this process so far, Rust allocations included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _chunks(total: int) -> AsyncIterator[bytes]:
    """A fresh 1 MiB object per chunk, as from a socket: a client that keeps chunks without copying
    them holds their memory while its parts are in flight."""
    template = memoryview(os.urandom(_MIB))
    for _ in range(total // _MIB):
        yield bytes(template)


async def _timed(run: Callable[[], Awaitable[int]]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = await run()
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_ms_per_op": (time.process_time() - cpu) * 1000 / count,
        "cpu_s": time.process_time() - cpu,
    }


async def _in_batches(calls: list[Callable[[], Awaitable[object]]], concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))
    return len(calls)


@dataclass(frozen=True, slots=True)
class _Client:
    """How one candidate does each step of the workload."""

    put: Callable[[str, bytes], Awaitable[object]]
    get: Callable[[str], Awaitable[object]]
    put_stream: Callable[[str, AsyncIterator[bytes]], Awaitable[object]]
    stream: Callable[[str], AsyncIterator[bytes]]


async def _measure(client: _Client, args: argparse.Namespace) -> dict[str, Any]:
    body, size = os.urandom(1024), args.large_mb * _MIB
    keys = [f"small/{i}" for i in range(args.small)]
    result: dict[str, Any] = {"rss_start_mib": _rss_mib()}
    puts = [lambda k=k: client.put(k, body) for k in keys]
    result["put_1k"] = await _timed(lambda: _in_batches(puts, args.concurrency))
    gets = [lambda k=k: client.get(k) for k in keys]
    result["get_1k"] = await _timed(lambda: _in_batches(gets, args.concurrency))
    result["rss_small_mib"] = _rss_mib()

    async def put_large() -> int:
        await client.put_stream("large", _chunks(size))
        return 1

    async def get_large() -> int:
        got = 0
        async for chunk in client.stream("large"):
            got += len(chunk)
        assert got == size, got
        return 1

    result["put_large"] = await _timed(put_large)
    result["rss_put_large_mib"] = _rss_mib()
    result["get_large"] = await _timed(get_large)
    result["rss_get_large_mib"] = _rss_mib()
    return result


async def _obstore(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    config = {"allow_http": True}
    store = S3Store(_BUCKET, prefix="obstore", endpoint=endpoint, region="us-east-1", client_options=config)

    async def get(key: str) -> None:
        await (await obstore.get_async(store, key)).bytes_async()

    async def put_stream(key: str, chunks: AsyncIterator[bytes]) -> None:
        # Four parts in flight, as many as proxy/cache/s3.py holds (obstore alone would send twelve).
        await obstore.put_async(store, key, chunks, chunk_size=_PART, max_concurrency=4)

    async def stream(key: str) -> AsyncIterator[bytes]:
        async for chunk in (await obstore.get_async(store, key)).stream(min_chunk_size=_MIB):
            yield chunk

    return await _measure(_Client(lambda k, b: obstore.put_async(store, k, b), get, put_stream, stream), args)


async def _aiobotocore(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(max_pool_connections=args.concurrency)
    async with get_session().create_client("s3", endpoint_url=endpoint, config=config) as s3:

        async def put(key: str, data: bytes) -> None:
            await s3.put_object(Bucket=_BUCKET, Key=f"aiobotocore/{key}", Body=data)

        async def get(key: str) -> None:
            response = await s3.get_object(Bucket=_BUCKET, Key=f"aiobotocore/{key}")
            async with response["Body"] as stream:
                await stream.read()

        async def put_stream(key: str, chunks: AsyncIterator[bytes]) -> None:
            # By hand, one part at a time: aiobotocore has no streaming upload of its own.
            key = f"aiobotocore/{key}"
            upload = await s3.create_multipart_upload(Bucket=_BUCKET, Key=key)
            parts, buffer = [], bytearray()

            async def send(data: bytes) -> None:
                number = len(parts) + 1
                sent = await s3.upload_part(
                    Bucket=_BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=data
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})

            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= _PART:
                    await send(bytes(buffer))
                    buffer.clear()
            if buffer:
                await send(bytes(buffer))
            await s3.complete_multipart_upload(
                Bucket=_BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
            )

        async def stream(key: str) -> AsyncIterator[bytes]:
            response = await s3.get_object(Bucket=_BUCKET, Key=f"aiobotocore/{key}")
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(_MIB):
                    yield chunk

        return await _measure(_Client(put, get, put_stream, stream), args)


async def _module(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """proxy/cache/s3.py itself: aiobotocore with the SHA-256 check of every streamed byte, and the
    next part filling while one is sent."""
    from proxy.cache.object_store import Expected
    from proxy.cache.s3 import S3ObjectStore

    async with S3ObjectStore(_BUCKET, prefix="module", endpoint_url=endpoint, part_size=_PART) as store:

        async def put_stream(key: str, chunks: AsyncIterator[bytes]) -> None:
            await store.put_stream(key, chunks, Expected(size=args.large_mb * _MIB))

        return await _measure(_Client(store.put, store.get, put_stream, store.stream), args)


_CLIENTS = {"obstore": _obstore, "aiobotocore": _aiobotocore, "proxy.cache.s3": _module}


def _row(name: str, r: dict[str, Any], args: argparse.Namespace) -> str:
    small = args.small / r["put_1k"]["wall_s"], args.small / r["get_1k"]["wall_s"]
    put, get = r["put_large"], r["get_large"]
    return (
        f"| {name} | {small[0]:.0f} / {small[1]:.0f} | {r['put_1k']['cpu_ms_per_op']:.2f} / "
        f"{r['get_1k']['cpu_ms_per_op']:.2f} | {put['wall_s']:.1f} / {get['wall_s']:.1f} | "
        f"{r['put_large']['cpu_s']:.2f} / {r['get_large']['cpu_s']:.2f} | {r['rss_start_mib']:.0f} → "
        f"{r['rss_small_mib']:.0f} → {r['rss_put_large_mib']:.0f} → {r['rss_get_large_mib']:.0f} |"
    )


def _worker(name: str, endpoint: str, args: argparse.Namespace, small: int, large_mb: int) -> tuple[int, str]:
    """Run one client's workload in a fresh process: (exit status, what it printed)."""
    worker = [sys.executable, __file__, "--client", name, "--endpoint", endpoint]
    worker += ["--small", str(small), "--concurrency", str(args.concurrency), "--large-mb", str(large_mb)]
    done = subprocess.run(worker, stdout=subprocess.PIPE, text=True, check=False)
    return done.returncode, done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--exits", type=int, default=16, help="short runs per client to count clean exits")
    parser.add_argument("--only", nargs="*", choices=sorted(_CLIENTS), help="candidates (default: all)")
    parser.add_argument("--client", choices=sorted(_CLIENTS), help=argparse.SUPPRESS)  # the worker
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.update(_CREDENTIALS)
    if args.client:
        print(json.dumps(asyncio.run(_CLIENTS[args.client](args.endpoint, args))), flush=True)
        return
    with MotoS3() as server:
        server.client.create_bucket(Bucket=_BUCKET)
        print(
            f"| client | 1 KB put / get per s ({args.concurrency} at once) | CPU ms per 1 KB put / get | "
            f"{args.large_mb} MB put / get s | {args.large_mb} MB put / get CPU s | peak RSS MiB "
            "(start → small → put → get) |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        names = args.only or list(_CLIENTS)
        for name in names:
            status, out = _worker(name, server.endpoint_url, args, args.small, args.large_mb)
            label = f"{name} (then exit status {status})" if status else name
            print(_row(label, json.loads(out), args), flush=True)
        # A process that did a few requests and ends at once, as a CLI command does.
        print("\n| client | short runs that exited 0 | other exit statuses |\n| --- | --- | --- |")
        for name in names:
            statuses = [_worker(name, server.endpoint_url, args, 4, 12)[0] for _ in range(args.exits)]
            failed = sorted(s for s in statuses if s)
            print(f"| {name} | {statuses.count(0)} of {args.exits} | {failed or '-'} |", flush=True)


if __name__ == "__main__":
    main()
