"""The status page at ``/`` and the per-release view under ``/-/release/``.

Over HTTP against a real upstream for the flow a person follows (meld → ``/`` → link → view), and
directly on a cache written by hand for what upstream controls (escaping) and who may see what.
"""

from __future__ import annotations

import asyncio
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from proxy.cache.store import CacheStore, PageKey
from proxy.config import Config, RouteConfig
from proxy.errors import BadRequest, NotFound, WheelmeldError
from proxy.meld import MeldReport
from proxy.observe import MeldLog, Metrics
from proxy.server.auth import ANYONE, Principal
from proxy.server.status import release_href, render_release
from proxy.server.status_page import human_bytes, render_status
from proxy.service.served_metadata import MetadataService
from tests.support.stack import MakeStack, Stack, anchors, index_of, raw_get, wheel

LINUX = "gpu_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
MAC = "gpu_lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
TORCH = "torch-2.7.0.dev20250116+cu126"


class _Rows(HTMLParser):
    """Each table row's cell texts, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None


def _rows(html_text: str) -> dict[str, list[str]]:
    parser = _Rows()
    parser.feed(html_text)
    return {row[0]: row[1:] for row in parser.rows if row}


def _gpu_stack(make_stack: MakeStack) -> Stack:
    index = index_of(
        {
            "gpu-lib": [
                wheel(LINUX, ["numpy", "nvidia-thing<2", 'helper>=1; python_version < "3.13"']),
                wheel(MAC, ["numpy"]),
            ]
        }
    )
    stack = make_stack(index, pep658=True)
    response = stack.client.get(stack.file("gpu-lib", MAC, ".metadata"))
    assert response.headers["x-wheelmeld-meld"] == "melded"
    return stack


def _release_link(stack: Stack) -> str:
    links = [a["href"] for a in anchors(stack.client.get("/").text) if (a["href"] or "").startswith("/-/")]
    assert len(links) == 1, links
    assert links[0] is not None
    return links[0]


def test_the_status_page_links_each_melded_release_to_its_view(make_stack: MakeStack) -> None:
    stack = _gpu_stack(make_stack)
    assert _release_link(stack) == "/-/release/simple/gpu-lib/1.0"


def test_the_release_view_shows_each_wheels_requirements_side_by_side(make_stack: MakeStack) -> None:
    stack = _gpu_stack(make_stack)
    response = stack.client.get(_release_link(stack))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html_text = response.text
    # Upstream-controlled text is escaped: the specifier's '<' never reaches the page raw.
    assert "nvidia-thing&lt;2" in html_text and "nvidia-thing<2" not in html_text
    rows = _rows(html_text)
    header = rows["requirement"]
    assert header[-1] == "served (melded)" and len(header) == 3  # one column per requirement set
    linux_column = 0 if LINUX in header[0] else 1
    assert LINUX not in header[1 - linux_column] and MAC in header[1 - linux_column]
    mac_column = 1 - linux_column
    assert rows["numpy"][:2] == ["✓", "✓"]
    assert "as written" in rows["numpy"][2]
    nvidia = rows["nvidia-thing<2"]
    assert nvidia[linux_column] == "✓" and nvidia[mac_column] == "—"
    assert "marker added" in nvidia[2] and 'sys_platform == "linux"' in nvidia[2]
    helper = rows['helper>=1; python_version < "3.13"']
    assert helper[mac_column] == "—" and "marker added" in helper[2]
    assert rows["file"] == ["served metadata"]
    # The added marker rewrites the Linux wheel's line too: both serve R*, neither upstream's bytes.
    assert rows[MAC] == ["rewritten"] and rows[LINUX] == ["rewritten"]


def test_the_release_view_reads_the_cache_only(make_stack: MakeStack) -> None:
    stack = _gpu_stack(make_stack)
    before = len(stack.upstream.requests_for(""))
    assert stack.client.get("/-/release/simple/gpu-lib/1.0").status_code == 200
    assert stack.client.get("/-/release/simple/gpu-lib/1.0.0").status_code == 200  # versions compare parsed
    assert len(stack.upstream.requests_for("")) == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/-/release/simple/gpu-lib/2.0", 404),  # no such release melded
        ("/-/release/simple/gpu-lib/not-a-version", 400),
        ("/-/release/nowhere/gpu-lib/1.0", 404),  # no such route
        ("/-/release/simple/1.0", 404),  # no page path
        ("/-/release/simple/gpu-lib/../../../etc/1.0", 400),
        ("/-/release/simple/%2e%2e/1.0", 400),
        ("/-/nothing-here", 404),
    ],
)
def test_release_view_errors(make_stack: MakeStack, path: str, status: int) -> None:
    stack = _gpu_stack(make_stack)
    got, body = raw_get(stack.proxy.port, path)
    assert got == status, body
    assert b"Traceback" not in body


def test_seed_torch_release_view(seed: Stack) -> None:
    wheel_name = f"{TORCH}-cp311-cp311-linux_aarch64.whl"
    assert seed.client.get(seed.file("torch", wheel_name, ".metadata")).status_code == 200
    link = _release_link(seed)
    assert link == "/-/release/whl/nightly/cu126/torch/2.7.0.dev20250116%2Bcu126"
    rows = _rows(seed.client.get(link).text)
    nvidia = {name: cells for name, cells in rows.items() if name.startswith("nvidia-")}
    assert len(nvidia) == 13
    for cells in nvidia.values():
        assert "✓" in cells[:-1] and "—" in cells[:-1]  # declared by some wheels, not by others
        assert 'platform_machine == "x86_64"' in cells[-1]
    # The x86_64 wheels already told the whole story: they keep upstream's bytes.
    assert rows[f"{TORCH}-cp311-cp311-manylinux_2_28_x86_64.whl"] == ["as upstream"]
    assert rows[wheel_name] == ["rewritten"]


@pytest.mark.parametrize(
    ("label", "example", "expected"),
    [
        ("simple/numpy", "numpy-2.0-cp311-cp311-win_amd64.whl", "/-/release/simple/numpy/2.0"),
        (
            "whl/nightly/cu126/torch",
            f"{TORCH}-cp311-cp311-linux_aarch64.whl",
            "/-/release/whl/nightly/cu126/torch/2.7.0.dev20250116%2Bcu126",
        ),
        ("a_b/x", "x-1-py3-none-any.whl", "/-/release/a/b/x/1"),  # nested prefix /a/b
        ("gone/x", "x-1-py3-none-any.whl", None),  # no such route any more
        ("simple/x", "not-a-wheel.tar.gz", None),
        ("simple", "x-1-py3-none-any.whl", None),  # the route root is no project page
    ],
)
def test_release_href(label: str, example: str, expected: str | None) -> None:
    routes = tuple(
        RouteConfig(prefix=p, upstream="https://upstream.example") for p in ("/simple", "/whl", "/a/b")
    )
    assert release_href(Config(routes=routes), label, example) == expected


# -- a cache written by hand -----------------------------------------------------------------------

_HOSTILE = "<script>alert(1)</script>"


def _hand_written(tmp_path: Path) -> tuple[Config, CacheStore, MetadataService]:
    routes = tuple(RouteConfig(prefix=p, upstream="https://upstream.example") for p in ("/simple", "/other"))
    config = Config(cache_dir=tmp_path, routes=routes)
    store = CacheStore(tmp_path)
    key = PageKey("simple", ("x",))
    wheels = ("x-1.0-py3-none-macosx_11_0_arm64.whl", "x-1.0-py3-none-manylinux_2_17_x86_64.whl")
    store.write_atomic(store.metadata_path(key, wheels[0]), b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n")
    store.write_atomic(
        store.metadata_path(key, wheels[1]),
        b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\nRequires-Dist: y<3; extra == '<b>'\n",
    )
    report = {
        "project": "x",
        "version": "1.0",
        "disagreed": True,
        "complete": True,
        "added": [{"requirement": 'y<3; extra == "<b>"', "result": "y<3; x", "marker": _HOSTILE}],
        "conflicts": [_HOSTILE],
        "problems": {_HOSTILE: _HOSTILE},
        "provides_extra": [_HOSTILE],
        "changed": [],
    }
    doc = {"hashes": dict.fromkeys(wheels, "0" * 64), "changed": {}, "report": report}
    store.write_atomic(store.meld_path(key, "k1"), json.dumps(doc).encode())
    return config, store, MetadataService(store, Metrics(), MeldLog(), offline=True)


def test_upstream_text_is_escaped_everywhere(tmp_path: Path) -> None:
    config, store, metadata = _hand_written(tmp_path)
    page = asyncio.run(render_release(config, store, metadata, ANYONE, "simple/x/1.0")).decode()
    assert "<script>" not in page and "<b>" not in page
    assert page.count("&lt;script&gt;") >= 4  # marker, conflict, problem, extra


@pytest.mark.parametrize(
    ("principal", "visible"),
    [
        (ANYONE, True),
        (Principal("reader", frozenset({"/simple"})), True),
        (Principal("other", frozenset({"/other"})), False),
        (Principal("nobody", frozenset()), False),
    ],
)
def test_a_release_of_an_unreadable_route_does_not_exist(
    tmp_path: Path, principal: Principal, visible: bool
) -> None:
    config, store, metadata = _hand_written(tmp_path)

    async def view() -> bytes:
        return await render_release(config, store, metadata, principal, "simple/x/1.0")

    if visible:
        assert b"<h1>x 1.0</h1>" in asyncio.run(view())
    else:
        with pytest.raises(NotFound) as info:
            asyncio.run(view())
        assert "/simple/x" in str(info.value)  # the same answer as for a route that does not exist


@pytest.mark.parametrize(
    ("path", "error"),
    [("simple/x/one.zero", BadRequest), ("simple/x/2.0", NotFound), ("simple/.x/1.0", BadRequest)],
)
def test_bad_release_paths(tmp_path: Path, path: str, error: type[WheelmeldError]) -> None:
    config, store, metadata = _hand_written(tmp_path)
    with pytest.raises(error):
        asyncio.run(render_release(config, store, metadata, ANYONE, path))


# -- the status page ---------------------------------------------------------------------------------


def test_a_single_wheel_release_says_there_was_nothing_to_meld(make_stack: MakeStack) -> None:
    stack = make_stack(index_of({"solo": [wheel("solo-1.0-py3-none-any.whl", ["idna"])]}), pep658=True)
    assert stack.client.get(stack.file("solo", "solo-1.0-py3-none-any.whl", ".metadata")).status_code == 200
    response = stack.client.get("/-/release/simple/solo/1.0")
    assert response.status_code == 200, response.text
    assert "single wheel" in response.text and "nothing to meld" in response.text
    assert "solo-1.0-py3-none-any.whl" in response.text
    assert stack.client.get("/-/release/simple/solo/2.0").status_code == 404  # no such release listed


def _status_of(report: dict[str, object]) -> str:
    routes = (RouteConfig(prefix="/simple", upstream="https://upstream.example"),)
    log = MeldLog()
    log.add("simple/x", "x-1.0-py3-none-macosx_11_0_arm64.whl", MeldReport.from_dict(report))
    metrics = Metrics()
    metrics.upstream_bytes = 1_991_165_751
    return render_status(Config(routes=routes), metrics, log, ANYONE).decode()


def test_the_status_page_escapes_upstream_text_and_shows_fields_it_does_not_know() -> None:
    lacking = ["x-1.0-py3-none-macosx_11_0_arm64.whl"]
    page = _status_of(
        {
            "wheels": 2,
            "disagreed": True,
            "added": [{"requirement": _HOSTILE, "marker": _HOSTILE, "lacking": lacking}],
            "conflicts": [_HOSTILE],
            "left_to_sdist": [_HOSTILE],  # a field a newer wheelmeld writes
        }
    )
    assert "<script>" not in page and page.count("&lt;script&gt;") == 4
    assert "left to sdist" in page
    assert "1.99 GB" in page and "1991165751" not in page
    assert "Missing on <span class='platforms'>macosx_11_0_arm64 (py3)</span>" in page


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (20_412, "20.4 kB"),
        (1_991_165_751, "1.99 GB"),
        (10**16, "10,000 TB"),
    ],
)
def test_human_bytes(size: int, shown: str) -> None:
    assert human_bytes(size) == shown
