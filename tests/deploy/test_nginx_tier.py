"""``deploy/nginx.conf`` for real: Debian's nginx in front of the real proxy in front of the fake upstream.

Each test starts its own upstream, proxy and nginx (milliseconds), and reads nginx's X-Cache-Status
and the number of requests that reached the proxy to tell which layer answered.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from proxy.config import AuthConfig, Credential
from proxy.server.auth import hash_secret
from tests.deploy.conftest import MakeTier
from tests.deploy.tier import NGINX_CONF
from tests.support.fake_index import FakeIndex
from tests.support.stack import JSON, wheel
from tests.support.upstream import Fault, UpstreamOptions

OPTIONS = UpstreamOptions(format="json", pep658=True, prefix="/simple")
FILE = "tiny-1.0-py3-none-any.whl"
FILE_PATH = f"/simple/tiny/{FILE}"
PAGE_PATH = "/simple/tiny/"
_FAST = {"n": 2, "r": 1, "p": 1}  # scrypt cost for tests: the verdicts, not the hardness, are tested


def _index(payload_size: int = 64) -> FakeIndex:
    return FakeIndex.from_files({"tiny": [wheel(FILE, ["idna>=3"], payload_size=payload_size)]})


def _status(response: httpx.Response) -> str:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.headers["x-cache-status"]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("path", [FILE_PATH, FILE_PATH + ".metadata"])
def test_a_second_request_is_answered_by_the_tier(make_tier: MakeTier, path: str) -> None:
    tier = make_tier(_index(), OPTIONS)
    first = tier.client.get(path)
    assert _status(first) == "MISS"
    upstream_before = len(tier.upstream.log)
    second = tier.client.get(path)
    assert _status(second) == "HIT"
    assert second.content == first.content
    assert second.headers["cache-control"] == first.headers["cache-control"]
    assert tier.proxy.requests(path) == 1
    assert len(tier.upstream.log) == upstream_before


def test_twenty_cold_requests_for_one_file_reach_the_proxy_once(make_tier: MakeTier) -> None:
    tier = make_tier(_index(payload_size=2_000_000), OPTIONS)
    # A slow body keeps the first request in flight while the other nineteen arrive.
    tier.upstream.inject_fault(FILE, Fault(chunk_size=256 * 1024, chunk_delay_ms=40))
    expected = tier.upstream.index.file(FILE).content

    def get(_: int) -> httpx.Response:
        with httpx.Client(base_url=tier.nginx.url, timeout=30.0) as client:
            return client.get(FILE_PATH)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(get, range(20)))
    assert all(r.status_code == 200 and r.content == expected for r in responses)
    assert tier.proxy.requests(FILE_PATH) == 1
    assert sorted(_status(r) for r in responses).count("MISS") == 1


def test_pages_are_kept_as_long_as_their_cache_control_says(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS, route={"page_ttl": 1})
    first = tier.client.get(PAGE_PATH, headers={"Accept": JSON})
    assert _status(first) == "MISS"
    assert first.headers["cache-control"] == "max-age=1"
    fetched = time.monotonic()
    second = tier.client.get(PAGE_PATH, headers={"Accept": JSON})
    if time.monotonic() - fetched < 1:
        assert _status(second) == "HIT"
    deadline = fetched + 5
    while _status(tier.client.get(PAGE_PATH, headers={"Accept": JSON})) != "EXPIRED":
        assert time.monotonic() < deadline, "the page was never fetched again"
        time.sleep(0.05)
    assert time.monotonic() - fetched >= 1
    assert tier.proxy.requests(PAGE_PATH) == 2


def test_json_and_html_pages_never_cross(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS)
    accepts = {"json": JSON, "html": "text/html"}
    for round_ in ("MISS", "HIT"):
        for kind, accept in accepts.items():
            response = tier.client.get(PAGE_PATH, headers={"Accept": accept})
            assert _status(response) == round_
            assert response.headers["vary"] == "Accept"
            assert response.headers["content-type"].startswith(accept), (kind, response.headers)
            if kind == "json":
                assert response.json()["name"] == "tiny"
            else:
                assert response.text.lstrip().lower().startswith("<!doctype html")
    assert tier.proxy.requests(PAGE_PATH) == 2


def test_a_credentialed_answer_is_never_served_to_anyone_else(make_tier: MakeTier) -> None:
    auth = AuthConfig(
        credentials=(
            Credential("user", "alice", hash_secret("alice-pw", **_FAST)),
            Credential("user", "bob", hash_secret("bob-pw", **_FAST)),
        )
    )
    tier = make_tier(_index(), OPTIONS, config={"auth": auth})
    alice, bob = _basic("alice", "alice-pw"), _basic("bob", "bob-pw")
    # A file's answer says "private"; a page's says only "max-age": neither may be shared.
    for path in (FILE_PATH, PAGE_PATH):
        first = tier.client.get(path, headers=alice)
        assert _status(first) == "MISS"
        assert "public" not in first.headers["cache-control"]
        assert _status(tier.client.get(path, headers=alice)) == "MISS"
        assert _status(tier.client.get(path, headers=bob)) == "MISS"
        assert tier.proxy.requests(path) == 3
        anonymous = tier.client.get(path)
        assert anonymous.status_code == 401
        assert anonymous.content != first.content


def test_a_public_answer_to_a_credentialed_request_is_shared(make_tier: MakeTier) -> None:
    # A proxy without [auth] answers "public" whatever the client sends (uv sends its index token).
    tier = make_tier(_index(), OPTIONS)
    first = tier.client.get(FILE_PATH, headers=_basic("anyone", "token"))
    assert _status(first) == "MISS"
    assert first.headers["cache-control"].startswith("public")
    assert _status(tier.client.get(FILE_PATH)) == "HIT"
    assert tier.proxy.requests(FILE_PATH) == 1


def test_the_tier_serves_what_it_has_when_the_proxy_is_down(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS, route={"page_ttl": 1})
    page = tier.client.get(PAGE_PATH, headers={"Accept": JSON})
    fetched = time.monotonic()
    file = tier.client.get(FILE_PATH)
    assert _status(page) == _status(file) == "MISS"
    tier.proxy.stop()
    assert tier.client.get(FILE_PATH).content == file.content
    deadline = fetched + 5
    while _status(stale := tier.client.get(PAGE_PATH, headers={"Accept": JSON})) != "STALE":
        assert time.monotonic() < deadline, "the expired page was never served stale"
        time.sleep(0.05)
    assert time.monotonic() - fetched >= 1
    assert stale.content == page.content
    # Nothing answered that the tier did not have.
    assert tier.client.get("/simple/other/").status_code == 502


def test_the_config_ships_no_test_addresses() -> None:
    # The tests rewrite the shipped file's deployment facts; the file itself names the replicas.
    text = NGINX_CONF.read_text(encoding="utf-8")
    assert "127.0.0.1" not in text
    assert "server wheelmeld-1:8000" in text
