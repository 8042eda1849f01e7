"""What bounds a ``.metadata`` answer, through the real proxy: size caps, hash checks, what is cached.

A METADATA read is capped wherever it comes from (the cached wheel as much as a remote one); upstream
metadata that fails its advertised hash is refused and never cached; a meld is keyed by what its
siblings' bytes are, and what could not take part in it is never written to the cache.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from proxy.cache.store import CacheStore, ProjectKey
from proxy.network.remote_zip import METADATA_SIZE_CAP
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import MakeStack, Stack, single_line, wait_until
from tests.support.wheels import build_wheel, metadata_from_fields

BOMB = "bomb-1.0-py3-none-any.whl"
MIB = 1024 * 1024


def _cache(stack: Stack, project: str) -> tuple[CacheStore, ProjectKey]:
    return CacheStore(stack.cache_dir), ProjectKey("simple", (project,))


def _metadata_files(stack: Stack) -> list[Path]:
    return sorted(stack.cache_dir.rglob("*.metadata"))


def test_a_zip_bomb_in_the_cache_is_never_inflated_whole(make_stack: MakeStack) -> None:
    # A METADATA of 4x the cap (64 MiB of one byte) deflates to some 64 KiB: small on disk.
    metadata = (
        metadata_from_fields("bomb", "1.0", ["idna"], (), None) + b"\n" + b"A" * (4 * METADATA_SIZE_CAP)
    )
    content = build_wheel(BOMB, metadata)
    del metadata
    assert len(content) < MIB
    stack = make_stack(FakeIndex.from_files({"bomb": [FakeFile(BOMB, content=content)]}))
    assert stack.client.get(stack.file("bomb", BOMB)).content == content
    store, key = _cache(stack, "bomb")
    wait_until(lambda: store.file_path(key, BOMB).exists(), "the wheel committed to the cache")
    tracemalloc.start()
    try:
        response = stack.client.get(stack.file("bomb", BOMB, ".metadata"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 502, response.status_code
    assert single_line(response.text) and "cap" in response.text, response.text
    # The proxy runs in this process: at most one cap's worth was ever inflated, never 64 MiB.
    assert peak < METADATA_SIZE_CAP + 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert _metadata_files(stack) == [], "nothing of it was cached"
