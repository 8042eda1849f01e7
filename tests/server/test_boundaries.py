"""What the proxy refuses: links to hosts it may not fetch (SSRF), paths that try to leave the cache,
unknown routes, other methods, and upstream failures — each a short, one-line answer, never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import MakeStack, Stack, raw_get, single_line, start_stack, wheel
from tests.support.upstream import PYTORCH_OPTIONS, Fault, UpstreamOptions, UpstreamServer

FAR = "far-1.0-py3-none-any.whl"


def _far_index() -> FakeIndex:
    return FakeIndex.from_files({"far": [wheel(FAR, ["idna"])]})


@pytest.fixture
def other_host() -> Iterator[UpstreamServer]:
    """A file host on 127.0.0.2: a loopback address that is not the upstream's origin."""
    with UpstreamServer(_far_index(), UpstreamOptions(prefix="/files"), host="127.0.0.2") as server:
        yield server


def _blocked_count(stack: Stack) -> int:
    for line in stack.client.get("/metrics").text.splitlines():
        if line.startswith("wheelmeld_blocked_fetches_total "):
            return int(float(line.split()[1]))
    raise AssertionError("no wheelmeld_blocked_fetches_total in /metrics")


# -- file links to other hosts ---------------------------------------------------------------------


@pytest.mark.parametrize("allow_public_hosts", [True, False])
def test_link_to_another_loopback_host_is_refused(
    make_stack: MakeStack, other_host: UpstreamServer, allow_public_hosts: bool
) -> None:
    stack = make_stack(
        _far_index(),
        link_style="absolute",
        absolute_base=other_host.url + "/files",
        route={"allow_public_hosts": allow_public_hosts},
    )
    for suffix in ("", ".metadata"):
        response = stack.client.get(stack.file("far", FAR, suffix))
        assert response.status_code == 502, (suffix, response.text)
        assert single_line(response.text), response.text
    assert other_host.log.records() == (), "not one request reached the other host"
    assert _blocked_count(stack) >= 2


def test_link_to_an_allowed_file_host_is_fetched(make_stack: MakeStack, other_host: UpstreamServer) -> None:
    stack = make_stack(
        _far_index(),
        link_style="absolute",
        absolute_base=other_host.url + "/files",
        route={"extra_file_hosts": (other_host.url,)},
    )
    response = stack.client.get(stack.file("far", FAR))
    assert response.status_code == 200
    assert response.content == _far_index().file(FAR).content
    assert [r.path for r in other_host.log.records()] == [f"/files/{FAR}"]
    assert _blocked_count(stack) == 0


@pytest.mark.parametrize(
    "base",
    [
        "http://10.255.255.1/files",
        "http://192.168.0.1/files",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/files",
        "http://0.0.0.0:9/files",
        "http://2130706433:9/files",  # 127.0.0.1 spelled as one number
        "http://localhost:9/files",
    ],
)
def test_links_to_private_addresses_are_refused(make_stack: MakeStack, base: str) -> None:
    stack = make_stack(_far_index(), link_style="absolute", absolute_base=base)
    response = stack.client.get(stack.file("far", FAR))
    assert response.status_code == 502
    assert single_line(response.text), response.text
    assert _blocked_count(stack) == 1


# -- paths that try to leave the cache -------------------------------------------------------------

_TRAVERSALS = [
    "/whl/nightly/cu126/torch/../../../../secret.whl",
    "/whl/nightly/cu126/torch/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.whl",
    "/whl/nightly/cu126/torch/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.whl",
    "/whl/nightly/cu126/torch/..%2F..%2F..%2F..%2Fsecret.whl",
    "/whl/nightly/cu126/torch/..%5C..%5C..%5C..%5Csecret.whl",
    "/whl/nightly/cu126/torch/..\\..\\..\\..\\secret.whl",
    "/whl/%2e%2e/%2e%2e/",
    "/whl/nightly/cu126/..%2F..%2F..%2F/",
    "/whl/nightly/cu126/torch/%2Fetc%2Fpasswd.whl",
    "/whl/nightly/cu126/torch/SECRET_ABSOLUTE",
    "/whl/nightly/cu126/torch/%00secret.whl",
    "/whl/nightly/cu126/torch/.metadata",
    "//etc/passwd",
    "/etc/passwd",
    "/../../etc/passwd",
]


def test_traversal_attempts_neither_read_nor_write_outside_the_cache(
    pytorch_index: FakeIndex, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"SECRET-CONTENT-OUTSIDE-THE-CACHE"
    for name in ("secret.whl", "secret.whl.metadata", "page.json"):
        (outside / name).write_bytes(secret)
    cache = outside / "nest" / "deeper" / "cache"  # '..' from the cache's pages lands in `outside`
    cache.parent.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*") if cache not in p.parents and p != cache)
    with contextlib.ExitStack() as stack:
        seed = start_stack(stack, cache, pytorch_index, PYTORCH_OPTIONS)
        absolute = "%2F".join(("", *str(outside / "secret.whl").strip("/").split("/")))
        for raw in _TRAVERSALS:
            raw = raw.replace("SECRET_ABSOLUTE", absolute)
            status, body = raw_get(seed.proxy.port, raw)
            assert status in (400, 404), (raw, status, body)
            assert secret not in body
            head_status, _ = raw_get(seed.proxy.port, raw, method="HEAD")
            assert head_status in (400, 404), (raw, head_status)
        for record in seed.upstream.log.records():
            assert ".." not in record.path and "secret" not in record.path, record.path
    after = sorted(p for p in tmp_path.rglob("*") if cache not in p.parents and p != cache)
    assert after == before, "nothing was written outside the cache directory"
    assert all(
        (outside / n).read_bytes() == secret for n in ("secret.whl", "secret.whl.metadata", "page.json")
    )


# -- routes and methods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope/", "/nope/torch/", "/whlx/torch/", "/nope/torch/x-1.0-py3-none-any.whl"]
)
def test_unknown_route_is_404(shared_seed: Stack, path: str) -> None:
    response = shared_seed.client.get(path)
    assert response.status_code == 404
    assert single_line(response.text), response.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize(
    "path",
    [
        "/whl/nightly/cu126/torch/",
        "/whl/nightly/cu126/filelock/filelock-3.16.1-py3-none-any.whl",
        "/whl/nightly/cu126/filelock/filelock-3.16.1-py3-none-any.whl.metadata",
        "/",
        "/healthz",
        "/metrics",
    ],
)
def test_other_methods_are_405(shared_seed: Stack, method: str, path: str) -> None:
    response = shared_seed.client.request(method, path, content=b"x")
    assert response.status_code == 405, (method, path, response.text)
    assert "Traceback" not in response.text


def test_head_of_a_page_has_no_body(shared_seed: Stack) -> None:
    get = shared_seed.client.get(shared_seed.page("torch"))
    head = shared_seed.client.head(shared_seed.page("torch"))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


# -- upstream failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 403])
def test_upstream_error_for_an_uncached_page_is_a_one_line_502(seed: Stack, status: int) -> None:
    seed.upstream.inject_fault("/torch/", Fault(status=status))
    response = seed.client.get(seed.page("torch"))
    assert response.status_code == 502
    assert single_line(response.text), response.text


def test_unreachable_upstream_is_a_one_line_502(tmp_path: Path) -> None:
    # A port that was free a moment ago: connection refused.
    with UpstreamServer(_far_index(), UpstreamOptions(prefix="/simple")) as gone:
        dead = gone.url
    config = proxy_config(tmp_path / "cache", {"/simple": dead + "/simple"})
    with ProxyServer(config) as proxy, httpx.Client(base_url=proxy.url, timeout=20) as client:
        response = client.get("/simple/far/")
    assert response.status_code == 502
    assert single_line(response.text), response.text


def test_stale_page_served_when_upstream_is_down(make_stack: MakeStack, pytorch_index: FakeIndex) -> None:
    stack = make_stack(
        pytorch_index,
        prefix="/whl/nightly/cu126",
        hashes=False,
        route={"page_ttl": 0.0},
    )
    fresh = stack.client.get(stack.page("torch"))
    assert fresh.status_code == 200
    assert fresh.headers["x-wheelmeld-cache"] == "fresh"
    name = "filelock-3.16.1-py3-none-any.whl"
    metadata = stack.client.get(stack.file("filelock", name, ".metadata")).content
    file_body = stack.client.get(stack.file("filelock", name)).content
    stack.upstream.stop()
    stale = stack.client.get(stack.page("torch"))
    assert stale.status_code == 200
    assert stale.headers["x-wheelmeld-cache"] == "stale"
    assert stale.text == fresh.text
    # What the cache holds keeps being served while upstream is gone.
    assert stack.client.get(stack.file("filelock", name, ".metadata")).content == metadata
    cached_file = stack.client.get(stack.file("filelock", name))
    assert cached_file.status_code == 200 and cached_file.content == file_body


def test_stale_page_served_when_upstream_answers_500(make_stack: MakeStack, pytorch_index: FakeIndex) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", hashes=False, route={"page_ttl": 0.0})
    assert stack.client.get(stack.page("torch")).headers["x-wheelmeld-cache"] == "fresh"
    stack.upstream.inject_fault("/torch/", Fault(status=500))
    stale = stack.client.get(stack.page("torch"))
    assert stale.status_code == 200
    assert stale.headers["x-wheelmeld-cache"] == "stale"


# -- upstream credentials ----------------------------------------------------------------------------


def test_credentials_go_upstream_only_and_are_never_served(
    make_stack: MakeStack, other_host: UpstreamServer
) -> None:
    secret = "s3cr3t-upstream-pw"
    stack = make_stack(
        _far_index(),
        pep658=False,
        link_style="absolute",
        absolute_base=other_host.url + "/files",
        route={"credentials": ("alice", secret), "extra_file_hosts": (other_host.url,)},
    )
    assert stack.client.get(stack.page("far")).status_code == 200
    assert stack.client.get(stack.file("far", FAR)).status_code == 200
    (page_request,) = stack.upstream.requests_for("/simple/far/")
    assert page_request.headers.get("authorization", "").startswith("Basic ")
    assert all("authorization" not in r.headers for r in other_host.log.records()), "no secret to file hosts"
    for path in ("/", "/metrics", stack.page("far")):
        assert secret not in stack.client.get(path).text
