"""``GET <route>/``: the route's project list, in both formats, cached, pointing at our project pages.

Projects whose names look like file names (``cal.exe``, ``zc.recipe.egg``) once made the list read
as a project page of "files" titled "Links for simple". Pages are read with the standard library.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import httpx
import pytest

from tests.cache.cachekit import metric
from tests.support.fake_index import FakeIndex
from tests.support.stack import JSON, MakeStack, Stack, anchors, wait_until, wheel
from tests.support.upstream import Fault

NAMES = ["cal.exe", "demo", "zc.recipe.egg"]
CANONICAL = {"cal.exe": "cal-exe", "demo": "demo", "zc.recipe.egg": "zc-recipe-egg"}


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {
            "cal.exe": [wheel("cal.exe-1.0-py3-none-any.whl")],
            "demo": [wheel("demo-1.0-py3-none-any.whl")],
            "zc.recipe.egg": [wheel("zc.recipe.egg-2.0-py3-none-any.whl")],
        }
    )


def _access_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wheelmeld.access" and f"path={path} " in r.getMessage()
    ]


def _html_names(stack: Stack, response: httpx.Response) -> dict[str, str]:
    """Each anchor's text -> the absolute URL it points at."""
    return {a["#text"] or "": urljoin(str(response.url), a["href"] or "") for a in anchors(response.text)}


@pytest.mark.parametrize("upstream_format", ["html", "json"])
def test_the_project_list_in_both_formats_links_to_our_project_pages(
    make_stack: MakeStack, upstream_format: str
) -> None:
    stack = make_stack(_index(), format=upstream_format)
    html_answer = stack.client.get("/simple/")
    assert html_answer.status_code == 200, html_answer.text
    assert html_answer.headers["content-type"].startswith("text/html")
    assert "Links for" not in html_answer.text
    links = _html_names(stack, html_answer)
    assert links == {n: f"{stack.proxy.url}/simple/{CANONICAL[n]}/" for n in NAMES}
    for url in links.values():  # every link is a project page the proxy serves
        assert stack.client.get(url).status_code == 200, url

    for asked in ({"headers": {"Accept": JSON}}, {"params": {"format": JSON}}):
        as_json = stack.client.get("/simple/", **asked)  # type: ignore[arg-type]
        assert as_json.status_code == 200
        assert as_json.headers["content-type"] == JSON
        document = as_json.json()
        assert document["meta"]["api-version"].startswith("1.")
        assert sorted(p["name"] for p in document["projects"]) == NAMES
        assert "files" not in document

    head = stack.client.head("/simple/", headers={"Accept": JSON})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(
        len(stack.client.get("/simple/", headers={"Accept": JSON}).content)
    )
    assert stack.client.get("/simple/", headers={"Accept": "text/plain"}).status_code == 406


def test_a_warm_list_is_served_from_the_cache(
    make_stack: MakeStack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(_index(), route={"page_ttl": 300.0})
    with caplog.at_level(logging.INFO, logger="wheelmeld.access"):
        first = stack.client.get("/simple/")
        again = [
            stack.client.get("/simple/", headers={"Accept": a}) for a in ("text/html", JSON, "text/html")
        ]
        wait_until(lambda: len(_access_lines(caplog, "/simple/")) == 4, "four access-log lines")
    assert all(r.status_code == 200 for r in again) and again[0].content == first.content
    assert len(stack.upstream.requests_for("/simple/")) == 1, "warm answers ask upstream nothing"
    lines = _access_lines(caplog, "/simple/")
    assert "cache=miss" in lines[0] and "upstream_ms=-" not in lines[0], lines[0]
    assert all("cache=hit" in line and "upstream_ms=-" in line for line in lines[1:]), lines
    # The page fetches count as upstream requests, their bodies as upstream bytes.
    metrics = stack.client.get("/metrics").text
    assert metric(metrics, "wheelmeld_upstream_requests_total", kind="page") == 1
    assert metric(metrics, "wheelmeld_upstream_bytes_total") == stack.upstream.bytes_sent_total("/simple/")
    assert metric(metrics, "wheelmeld_cache_total", outcome="miss") == 1
    assert metric(metrics, "wheelmeld_cache_total", outcome="hit") == 3


def test_an_expired_list_is_revalidated_and_kept_stale_when_upstream_fails(
    make_stack: MakeStack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(_index(), route={"page_ttl": 0.0})
    with caplog.at_level(logging.INFO, logger="wheelmeld.access"):
        first = stack.client.get("/simple/").content
        revalidated = stack.client.get("/simple/")
        assert revalidated.content == first
        assert stack.upstream.requests_for("/simple/")[-1].status == 304
        stack.upstream.inject_fault("/simple/", Fault(status=503))
        stale = stack.client.get("/simple/")
        wait_until(lambda: len(_access_lines(caplog, "/simple/")) == 3, "three access-log lines")
    assert stale.status_code == 200 and stale.content == first
    assert stale.headers["x-wheelmeld-cache"] == "stale" and "503" in stale.headers["x-wheelmeld-stale"]
    outcomes = [line.split("cache=")[1].split()[0] for line in _access_lines(caplog, "/simple/")]
    assert outcomes == ["miss", "revalidated", "stale"]


def test_a_list_cached_before_its_html_rendering_existed_is_served_offline(make_stack: MakeStack) -> None:
    online = make_stack(_index())
    as_json = online.client.get("/simple/", headers={"Accept": JSON}).content
    (online.cache_dir / "v1" / "simple" / "page.html").unlink()  # as an older wheelmeld left it
    online.proxy.stop()
    offline = make_stack(_index(), config={"offline": True}, cache_dir=online.cache_dir)
    html_answer = offline.client.get("/simple/")
    assert html_answer.status_code == 200
    assert sorted(_html_names(offline, html_answer)) == NAMES
    assert offline.client.get("/simple/", headers={"Accept": JSON}).content == as_json


def test_a_directory_listing_below_a_route_is_a_project_list_too(make_stack: MakeStack) -> None:
    # The PyTorch index's /whl/nightly/cu126/ is such a list, one level below the route /whl.
    stack = make_stack(_index(), prefix="/whl/nightly/cu126")
    response = stack.client.get("/whl/nightly/cu126/")
    assert response.status_code == 200 and "Links for" not in response.text
    assert _html_names(stack, response) == {
        n: f"{stack.proxy.url}/whl/nightly/cu126/{CANONICAL[n]}/" for n in NAMES
    }
