"""What bounds a ``.metadata`` answer, through the real proxy: size caps, hash checks, what is cached.

A METADATA read is capped wherever it comes from (the cached wheel as much as a remote one); upstream
metadata that fails its advertised hash is refused and never cached; a meld is keyed by what its
siblings' bytes are, and what could not take part in it is never written to the cache.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from packaging.metadata import parse_email
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from proxy.cache.store import CacheStore, PageKey
from proxy.network.remote_zip import METADATA_SIZE_CAP
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import MakeStack, Stack, single_line, wait_until, wheel
from tests.support.upstream import Fault
from tests.support.wheels import build_wheel, metadata_from_fields

BOMB = "bomb-1.0-py3-none-any.whl"
MIB = 1024 * 1024


def _cache(stack: Stack, project: str) -> tuple[CacheStore, PageKey]:
    return CacheStore(stack.cache_dir), PageKey("simple", (project,))


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


# -- the sha256 of upstream's .metadata -------------------------------------------------------------

SOLO = "solo-1.0-py3-none-any.whl"


def test_metadata_that_does_not_match_its_advertised_sha256_is_refused_and_not_cached(
    make_stack: MakeStack,
) -> None:
    index = FakeIndex.from_files({"solo": [wheel(SOLO, ["idna"])]})
    stack = make_stack(index, pep658=True, format="json")
    stack.upstream.inject_fault(SOLO + ".metadata", Fault(wrong_bytes=True))
    refused = stack.client.get(stack.file("solo", SOLO, ".metadata"))
    assert refused.status_code == 502, refused.status_code
    assert single_line(refused.text) and "sha256" in refused.text, refused.text
    assert _metadata_files(stack) == [], "the unverified bytes were not kept"
    stack.upstream.clear_faults()
    good = stack.client.get(stack.file("solo", SOLO, ".metadata"))
    assert good.status_code == 200 and good.content == index.file(SOLO).metadata


# -- what makes a new meld, and what a meld may cache --------------------------------------------

LINUX = "rel-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
WIN = "rel-1.0-cp311-cp311-win_amd64.whl"
MAC = "rel-1.0-cp311-cp311-macosx_11_0_arm64.whl"


def _release(**linux: Any) -> FakeIndex:
    return FakeIndex.from_files(
        {"rel": [wheel(LINUX, linux.get("requires", ["numpy", "cuda-thing"])), wheel(WIN, ["numpy"])]}
    )


def _names(body: bytes) -> set[str]:
    raw, _ = parse_email(body)
    return {canonicalize_name(Requirement(r).name) for r in raw.get("requires_dist", [])}


def _samples(stack: Stack) -> dict[str, float]:
    found = {}
    for line in stack.client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_a_sibling_re_uploaded_under_its_name_makes_a_new_meld(make_stack: MakeStack) -> None:
    stack = make_stack(_release(), pep658=True, format="json", route={"page_ttl": 0.0})
    before = stack.client.get(stack.file("rel", WIN, ".metadata"))
    assert before.headers["x-wheelmeld-meld"] == "melded" and "cuda-thing" in _names(before.content)
    # Same file name, other bytes: the page's hashes change, nothing else does.
    stack.upstream.set_index(_release(requires=["numpy", "rocm-thing"]))
    assert stack.client.get(stack.page("rel")).status_code == 200  # page_ttl 0: revalidated
    after = stack.client.get(stack.file("rel", WIN, ".metadata"))
    assert after.headers["x-wheelmeld-meld"] == "melded"
    assert "rocm-thing" in _names(after.content) and "cuda-thing" not in _names(after.content)
    assert _samples(stack)["wheelmeld_melds_total"] == 2
    assert len(list(stack.cache_dir.rglob("meld/*.json"))) == 2


def _with_corrupt_sibling(win_metadata: bytes) -> FakeIndex:
    good = wheel(LINUX, ["numpy", "cuda-thing"])
    corrupt = replace(wheel(WIN, ["numpy"]), metadata=win_metadata)
    return FakeIndex.from_files({"rel": [good, corrupt, wheel(MAC, ["numpy"])]})


def test_a_corrupt_siblings_metadata_is_never_cached_and_its_meld_not_redone_per_request(
    make_stack: MakeStack,
) -> None:
    corrupt = b"Metadata-Version: 2.1\nName: rel\nVersion: 1.0\nRequires-Dist: numpy >=\n"
    stack = make_stack(_with_corrupt_sibling(corrupt), pep658=True, format="json")
    store, key = _cache(stack, "rel")
    for _ in range(3):
        response = stack.client.get(stack.file("rel", MAC, ".metadata"))
        assert response.status_code == 200
        assert (
            "incomplete" in response.headers["x-wheelmeld-meld"]
            and WIN in response.headers["x-wheelmeld-meld"]
        )
    assert not store.metadata_path(key, WIN).exists(), "the corrupt sibling's bytes are not cached"
    assert store.metadata_path(key, LINUX).exists(), "the usable siblings' are"
    assert list(stack.cache_dir.rglob("meld/*.json")) == [], "an incomplete meld is not cached"
    assert _samples(stack)["wheelmeld_melds_total"] == 1, "held in memory, not redone per request"


def test_an_incomplete_meld_is_retried_when_not_held(make_stack: MakeStack) -> None:
    corrupt = b"Metadata-Version: 2.1\nName: rel\nVersion: 1.0\nRequires-Dist: numpy >=\n"
    stack = make_stack(
        _with_corrupt_sibling(corrupt), pep658=True, format="json", config={"meld_incomplete_retry": 0.0}
    )
    for _ in range(2):
        assert (
            "incomplete" in stack.client.get(stack.file("rel", MAC, ".metadata")).headers["x-wheelmeld-meld"]
        )
    assert _samples(stack)["wheelmeld_melds_total"] == 2


# -- bounded melds ------------------------------------------------------------------------------


def test_the_configured_requirement_limit_reaches_the_meld(make_stack: MakeStack) -> None:
    stack = make_stack(_release(), pep658=True, format="json", config={"meld_max_requirements": 1})
    response = stack.client.get(stack.file("rel", WIN, ".metadata"))
    state = response.headers["x-wheelmeld-meld"]
    assert "incomplete" in state and LINUX in state, state
    assert response.content == _release().file(WIN).metadata, "its own metadata, unchanged"


HUGE_SIBLING = 100_000


def test_a_sibling_with_100000_requirements_is_left_out_while_other_requests_are_answered(
    make_stack: MakeStack,
) -> None:
    huge = wheel(LINUX, [f"dep-{i}>={i}" for i in range(HUGE_SIBLING)])
    assert huge.metadata is not None and len(huge.metadata) > 2 * MIB
    index = FakeIndex.from_files({"rel": [huge, wheel(WIN, ["numpy"])], "solo": [wheel(SOLO, ["idna"])]})
    stack = make_stack(index, pep658=True, format="json")
    assert stack.client.get(stack.page("solo")).status_code == 200  # warm from now on
    # The big sibling's metadata arrives slowly: the meld is under way for a while, for sure.
    stack.upstream.inject_fault(LINUX + ".metadata", Fault(chunk_size=256 * 1024, chunk_delay_ms=100))
    done: dict[str, float] = {}
    melded: list[httpx.Response] = []

    def meld() -> None:
        with httpx.Client(base_url=stack.proxy.url, timeout=60) as client:
            melded.append(client.get(stack.file("rel", WIN, ".metadata")))
        done["meld"] = time.monotonic()

    started = time.monotonic()
    worker = threading.Thread(target=meld)
    worker.start()
    try:
        wait_until(lambda: stack.upstream.requests_for(LINUX + ".metadata"), "the big sibling asked for")
        warm = stack.client.get(stack.page("solo"))
        done["warm"] = time.monotonic()
        assert warm.status_code == 200
    finally:
        worker.join(60)
    assert done["warm"] < done["meld"], "a warm page is answered while the meld runs"
    assert done["meld"] - started < 20, "the meld is bounded (it took 27.5 s unbounded)"
    (response,) = melded
    state = response.headers["x-wheelmeld-meld"]
    assert "incomplete" in state and LINUX in state, state
    assert response.content == index.file(WIN).metadata, "the wheel's own metadata"
    assert list(stack.cache_dir.rglob("meld/*.json")) == [], "not cached"
    store, key = _cache(stack, "rel")
    assert not store.metadata_path(key, LINUX).exists()
