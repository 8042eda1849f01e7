"""A release's sdist in its meld: its metadata is read only when the wheels disagree, once ever, and
its identity is part of the release's; metadata that cannot be had serves an answer but caches none.

Upstream request logs are the evidence (what the proxy asked for, how many bytes came back).
"""

from __future__ import annotations

import time
from dataclasses import replace

from packaging.metadata import parse_email

from proxy.index.model import DistFile
from proxy.index.releases import release_groups
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.sdists import build_sdist, pkg_info
from tests.support.stack import MakeStack, wheel
from tests.support.upstream import Fault

LINUX = "lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
MAC = "lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
SDIST = "lib-1.0.tar.gz"
_STATIC = pkg_info("lib", "1.0", ("numpy", 'six; platform_machine != "arm64"'))


def _index(*, agree: bool = False, sdist: bytes | None = None) -> FakeIndex:
    linux = ["numpy"] if agree else ["numpy", "six"]
    content = build_sdist(SDIST, _STATIC, payload_size=2 * 1024 * 1024) if sdist is None else sdist
    return FakeIndex.from_files(
        {"lib": [wheel(LINUX, linux), wheel(MAC, ["numpy"]), FakeFile(SDIST, content=content)]}
    )


def _requires(body: bytes) -> list[str]:
    return parse_email(body)[0].get("requires_dist", [])


def test_disagreeing_wheels_read_the_sdists_head_once(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), pep658=True)
    response = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert response.status_code == 200
    assert response.headers["x-wheelmeld-meld"] == "melded"
    (sdist_request,) = stack.requests(SDIST)
    assert sdist_request[2] is None, "a plain GET, stopped early"
    metrics = stack.client.get("/metrics").text
    assert 'wheelmeld_upstream_requests_total{kind="sdist"} 1' in metrics
    # Kept like any metadata: a restart on the same cache asks upstream for no sdist byte again.
    again = make_stack(_index(), pep658=True, cache_dir=stack.cache_dir)
    assert again.client.get(again.file("lib", LINUX, ".metadata")).status_code == 200
    assert again.requests(SDIST) == []


def test_agreeing_wheels_fetch_no_sdist(make_stack: MakeStack) -> None:
    stack = make_stack(_index(agree=True), pep658=True)
    response = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert response.headers["x-wheelmeld-meld"] == "agree"
    assert stack.requests(SDIST) == []


def test_an_unreadable_sdist_serves_an_incomplete_meld_and_caches_none(make_stack: MakeStack) -> None:
    stack = make_stack(_index(sdist=b"not an archive"), pep658=True, config={"meld_incomplete_retry": 0.0})
    for _ in range(2):
        response = stack.client.get(stack.file("lib", MAC, ".metadata"))
        assert response.status_code == 200
        assert "incomplete" in response.headers["x-wheelmeld-meld"], response.headers["x-wheelmeld-meld"]
    assert not list(stack.cache_dir.rglob(f"{SDIST}.metadata")), "nothing of it on disk"
    # The archive never changes: what it lacks is remembered, not read again on every retry.
    assert len(stack.requests(SDIST)) == 1


def test_an_sdist_that_failed_in_transfer_is_read_again(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), pep658=True, config={"meld_incomplete_retry": 0.0})
    stack.upstream.inject_fault(SDIST, Fault(status=503, times=1))
    first = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert "incomplete" in first.headers["x-wheelmeld-meld"]
    second = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert second.headers["x-wheelmeld-meld"] == "melded"
    assert len(stack.requests(SDIST)) == 2


def _dist(filename: str, sha: str = "a" * 64) -> DistFile:
    return DistFile(filename, f"https://upstream.example/{filename}", {"sha256": sha}, None, False, False)


def test_the_sdist_is_part_of_the_release_identity() -> None:
    wheels = [_dist(LINUX), _dist(MAC)]
    with_sdist = release_groups([*wheels, _dist(SDIST)])[LINUX]
    reuploaded = release_groups([*wheels, _dist(SDIST, "b" * 64)])[LINUX]
    without = release_groups(wheels)[LINUX]
    unknown = release_groups([*wheels, _dist("lib-0.9.tar.bz2")])[LINUX]
    assert len({with_sdist.key, reuploaded.key, without.key, unknown.key}) == 4
    assert with_sdist.sdist == _dist(SDIST)
    assert without.sdist is not None and unknown.sdist is None
    # Another version's sdist is not this release's.
    assert release_groups([*wheels, _dist("lib-2.0.tar.gz")])[LINUX].key == without.key
    assert release_groups([*wheels, replace(_dist("lib-1.0.zip"))])[MAC].sdist == _dist("lib-1.0.zip")


def test_a_dripping_sdist_is_cut_off_at_the_upstream_timeout(make_stack: MakeStack) -> None:
    # Each chunk arrives well within httpx's read timeout; only a deadline on the whole read ends it.
    timeout = 1.0
    slow = build_sdist(SDIST, _STATIC, payload_size=8 * 1024, pkg_info_last=True)  # 8 s of drip
    stack = make_stack(
        _index(sdist=slow), pep658=True, config={"upstream_timeout": timeout, "meld_incomplete_retry": 0.0}
    )
    stack.upstream.inject_fault(SDIST, Fault(chunk_size=100, chunk_delay_ms=100))
    started = time.monotonic()
    response = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert time.monotonic() - started < 5 * timeout
    assert response.status_code == 200
    assert "incomplete" in response.headers["x-wheelmeld-meld"], response.headers["x-wheelmeld-meld"]
