"""``cache.max_size`` through the proxy (least-recently-used files go, metadata and pages stay), and the
``wheelmeld cache stats|prune|verify`` commands on a cache the proxy filled.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from proxy.cli import main
from tests.cache.cachekit import cache_files
from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, Stack, wait_until, wheel

_SIZE = 1_000_000
NAMES = [f"pkg-{v}.0-py3-none-any.whl" for v in (1, 2, 3)]


def _index() -> FakeIndex:
    return FakeIndex.from_files({"pkg": [wheel(n, ["idna"], payload_size=_SIZE) for n in NAMES]})


def _get(stack: Stack, name: str, suffix: str = "") -> bytes:
    response = stack.client.get(f"/simple/pkg/{name}{suffix}")
    assert response.status_code == 200, response.text
    return response.content


def _held(stack: Stack) -> set[str]:
    return {name for name in NAMES if cache_files(stack.cache_dir, name)}


def test_max_size_evicts_the_least_recently_used_file_only(make_stack: MakeStack) -> None:
    index = _index()
    # Room for two of the three files.
    stack = make_stack(index, config={"cache_max_size": int(2.5 * _SIZE)})
    one, two, three = NAMES
    for name in (one, two):
        _get(stack, name)
        _get(stack, name, ".metadata")
        wait_until(lambda n=name: n in _held(stack), f"{name} committed")
    time.sleep(0.01)
    _get(stack, one)  # served from the cache: now the most recently used
    _get(stack, three)
    wait_until(
        lambda: _held(stack) == {one, three}, f"the least recently used ({two}) evicted: {_held(stack)}"
    )
    wait_until(lambda: not cache_files(stack.cache_dir, two + ".sha256"), "its hash goes with it")
    assert cache_files(stack.cache_dir, two + ".metadata"), "metadata is never evicted"
    assert list(stack.cache_dir.rglob("page.json")), "pages are never evicted"
    # What was evicted is fetched again on demand, verified and cached anew.
    assert _get(stack, two) == index.file(two).content
    wait_until(lambda: two in _held(stack), "re-fetched file committed")
    wait_until(lambda: len(_held(stack)) == 2, "back under the limit")


def test_no_limit_keeps_everything(make_stack: MakeStack) -> None:
    stack = make_stack(_index())
    for name in NAMES:
        _get(stack, name)
    wait_until(lambda: _held(stack) == set(NAMES), "all committed")


# -- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def filled(make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A cache holding the page, two files and their metadata, filled through the proxy."""
    for var in ("WHEELMELD_CACHE_DIR", "WHEELMELD_CACHE_MAX_SIZE", "WHEELMELD_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    stack = make_stack(_index())
    for name in NAMES[:2]:
        _get(stack, name)
        _get(stack, name, ".metadata")
    wait_until(lambda: _held(stack) == set(NAMES[:2]), "two files committed")
    return stack


def _stats(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["cache", "stats", "--json", "--cache-dir", str(cache_dir)]) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_stats_counts_entries_and_bytes_by_kind_and_route(
    filled: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _stats(filled.cache_dir, capsys)
    kinds = doc["routes"]["simple"]  # type: ignore[index]
    files = [p for n in NAMES[:2] for p in cache_files(filled.cache_dir, n)]
    assert kinds["file"] == {"entries": 2, "bytes": sum(p.stat().st_size for p in files)}
    assert kinds["hash"]["entries"] == 2
    assert kinds["metadata"]["entries"] >= 2
    assert kinds["page"]["entries"] == 1
    assert main(["cache", "stats", "--cache-dir", str(filled.cache_dir)]) == 0
    table = capsys.readouterr().out
    assert "simple" in table and "total:" in table


def test_prune_evicts_files_down_to_the_size(filled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    first = NAMES[0]
    time.sleep(0.01)
    _get(filled, first)  # the first one committed is now the one used last
    assert main(["cache", "prune", "--max-size", "1.5MB", "--cache-dir", str(filled.cache_dir)]) == 0
    assert "evicted 1 file(s)" in capsys.readouterr().out
    assert _held(filled) == {first}
    assert main(["cache", "prune", "--max-size", "0", "--cache-dir", str(filled.cache_dir)]) == 0
    capsys.readouterr()
    kinds = _stats(filled.cache_dir, capsys)["routes"]["simple"]  # type: ignore[index]
    assert kinds["file"]["entries"] == 0
    assert kinds["metadata"]["entries"] >= 2 and kinds["page"]["entries"] == 1


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_passes_a_good_cache(filled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "verify", "--cache-dir", str(filled.cache_dir)]) == 0
    captured = capsys.readouterr()
    assert "checked 2 file(s)" in captured.out and "0 bad" in captured.out
    assert "verify: 2/2 files" in captured.err, "progress goes to stderr"


def test_verify_reports_and_drops_a_corrupt_file(filled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    bad, good = NAMES[:2]
    [bad_path] = cache_files(filled.cache_dir, bad)
    _corrupt(bad_path)
    assert main(["cache", "verify", "--keep", "--cache-dir", str(filled.cache_dir)]) == 1
    out = capsys.readouterr().out
    assert f"BAD {bad_path}" in out and "recorded" in out
    assert bad_path.exists(), "--keep only reports"
    assert main(["cache", "verify", "--cache-dir", str(filled.cache_dir)]) == 1
    capsys.readouterr()
    assert _held(filled) == {good}
    assert not cache_files(filled.cache_dir, bad + ".sha256")
    # The proxy fetches it again, whole and verified.
    assert _get(filled, bad) == filled.upstream.index.file(bad).content


def test_verify_checks_the_pages_hash_too(filled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """A file and its sidecar changed together still disagree with the hash upstream's page gave."""
    name = NAMES[0]
    [path] = cache_files(filled.cache_dir, name)
    _corrupt(path)
    path.with_name(name + ".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    assert main(["cache", "verify", "--cache-dir", str(filled.cache_dir)]) == 1
    assert "page's" in capsys.readouterr().out
    assert name not in _held(filled)


def test_an_evicted_file_stops_lending_its_hash_to_the_page(make_stack: MakeStack) -> None:
    """Upstream gives no hash (a nightly): the page shows ours only while we hold the file."""
    stack = make_stack(_index(), hashes=False, config={"cache_max_size": int(1.5 * _SIZE)})
    one, two, _ = NAMES
    _get(stack, one)
    wait_until(lambda: one in _held(stack), "first file committed")
    assert f"{one}#sha256=" in stack.client.get("/simple/pkg/").text
    _get(stack, two)
    wait_until(lambda: _held(stack) == {two}, f"the first file evicted: {_held(stack)}")
    # The eviction's page re-render follows its last unlink by a moment.
    wait_until(
        lambda: f"{one}#sha256=" not in stack.client.get("/simple/pkg/").text, "no hash for an evicted file"
    )
    assert f"{two}#sha256=" in stack.client.get("/simple/pkg/").text
