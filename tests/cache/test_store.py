"""The store's guarantees (atomic writes, locks that a killed holder frees, start-up cleaning that spares
live writers) and the pure parts of housekeeping: entry classification and LRU victim choice.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path, PurePath

import pytest

from proxy.cache.evict import choose_victims, evict
from proxy.cache.inventory import Entry, Kind, classify, scan, summarize
from proxy.cache.store import CacheStore, PageKey
from tests.cache.cachekit import REPO, holding_child


def test_write_atomic_writes_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    target = store.page_path(PageKey("simple", ("demo",)))
    store.write_atomic(target, b"one")
    store.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert list(store.tmp_dir.iterdir()) == []


def test_a_failed_write_leaves_no_temp_and_no_entry(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    with pytest.raises(RuntimeError), store.open_temp() as (_tmp, fh):
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert list(store.tmp_dir.iterdir()) == []


def test_prepare_drops_abandoned_temp_files_but_spares_a_live_writer(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    abandoned = store.tmp_dir / "part-dead"
    abandoned.write_bytes(b"left by a killed process")
    with store.open_temp() as (live, fh):
        fh.write(b"a download in another worker")
        assert CacheStore(tmp_path).prepare() == 1
        assert live.exists(), "a temp file whose writer holds its flock is in use"
        assert not abandoned.exists()
    assert not live.exists()


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from proxy.cache.store import CacheStore

    async def main():
        async with CacheStore(Path(sys.argv[1])).lock("file:x"):
            print("held", flush=True)
            time.sleep(60)

    asyncio.run(main())
    """
)


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with store.try_lock("file:x") as got:
                assert not got, "another process holds it"
        finally:
            holder.kill()  # SIGKILL: no cleanup code of the holder runs
            holder.wait(timeout=10)
    with store.try_lock("file:x") as got:
        assert got, "kill -9 of the holder released the flock"

    async def take() -> bool:
        async with asyncio.timeout(5), store.lock("file:x"):
            return True

    assert asyncio.run(take())


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("demo/page.json", "page"),
        ("page.json", "page"),
        ("demo/files/demo-1.0-py3-none-any.whl", "file"),
        ("demo/files/demo-1.0.tar.gz", "file"),
        ("demo/files/demo-1.0-py3-none-any.whl.sha256", "hash"),
        ("demo/metadata/demo-1.0-py3-none-any.whl.metadata", "metadata"),
        ("demo/meld/0123abcd.json", "meld"),
        ("nightly/cu126/torch/files/torch-2.7.0-cp311-cp311-linux_x86_64.whl", "file"),
        ("files/page.json", "page"),  # a project called "files"
        ("metadata/page.json", "page"),  # a project called "metadata"
        ("demo/metadata/stray.txt", "other"),
        ("demo/notes.txt", "other"),
    ],
)
def test_classify(relative: str, kind: Kind) -> None:
    assert classify(PurePath(relative)) == kind


def _entry(name: str, size: int, used: float) -> Entry:
    return Entry(Path("/c/v1/simple/p/files") / name, "simple", "file", size, used)


_A, _B, _C = _entry("a", 100, 1.0), _entry("b", 100, 2.0), _entry("c", 100, 3.0)


@pytest.mark.parametrize(
    ("files", "max_size", "protected", "victims"),
    [
        ([_A, _B, _C], 300, set(), []),  # fits
        ([_A, _B, _C], 250, set(), ["a"]),  # least recently used first
        ([_C, _B, _A], 150, set(), ["a", "b"]),  # scan order does not matter
        ([_A, _B, _C], 0, set(), ["a", "b", "c"]),
        ([_A, _B, _C], 250, {_A.path}, ["b"]),  # in use: spared, the next one goes
        ([_A, _B, _C], 0, {_C.path}, ["a", "b"]),  # spared even when that leaves us over the limit
        ([_entry("y", 10, 5.0), _entry("x", 10, 5.0)], 10, set(), ["x"]),  # ties broken by path
    ],
)
def test_choose_victims(files: list[Entry], max_size: int, protected: set[Path], victims: list[str]) -> None:
    assert [v.path.name for v in choose_victims(files, max_size, protected)] == victims


def test_evict_removes_files_and_their_hashes_only(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    key = PageKey("simple", ("demo",))
    store.write_atomic(store.page_path(key), b"{}")
    store.write_atomic(store.metadata_path(key, "old.whl"), b"Metadata-Version: 2.1\n")
    for age, name in enumerate(("old.whl", "new.whl")):
        path = store.file_path(key, name)
        store.write_atomic(path, b"x" * 1000)
        store.write_atomic(path.with_name(name + ".sha256"), b"0" * 64)
        stamp = time.time() - 100 + age
        os.utime(path, (stamp, stamp))
    result = evict(store, 1500)
    assert [p.name for p in result.removed] == ["old.whl"]
    assert (result.freed, result.remaining) == (1000, 1000)
    kinds = summarize(scan(store.data_root)).routes["simple"]
    assert (kinds["file"].count, kinds["hash"].count) == (1, 1)
    assert (kinds["page"].count, kinds["metadata"].count) == (1, 1), "pages and metadata are never evicted"


def test_one_evictor_at_a_time(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    with store.try_lock("evict") as got:
        assert got
        assert evict(store, 0).skipped


_MANY_HOLDER = textwrap.dedent(
    """
    import contextlib, sys, time
    from pathlib import Path
    from proxy.cache.store import CacheStore

    store = CacheStore(Path(sys.argv[1]))
    with contextlib.ExitStack() as stack:
        assert all(stack.enter_context(store.try_lock(f"file:{i}")) for i in range(int(sys.argv[2])))
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_waiting_for_locks_another_process_holds_parks_no_threads(tmp_path: Path) -> None:
    """Twenty downloads waiting on another worker must not starve this worker's thread pool."""
    store = CacheStore(tmp_path)
    store.prepare()
    keys = 20
    with holding_child(_MANY_HOLDER, str(tmp_path), str(keys)) as holder:

        async def scenario() -> float:
            async def wait_for(i: int) -> None:
                async with store.lock(f"file:{i}"):
                    pass

            waiters = [asyncio.create_task(wait_for(i)) for i in range(keys)]
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.wait_for(asyncio.to_thread(time.sleep, 0), timeout=5)
            elapsed = time.monotonic() - started
            assert not any(w.done() for w in waiters), "the other process still holds every lock"
            holder.kill()  # the holder dies: every waiter gets its lock
            await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
            return elapsed

        assert asyncio.run(scenario()) < 1.0
