"""Project pages and the project list as ``wheelmeld serve`` serves them (PEP 503, 691, 658, 700, 714).

Every test runs a real proxy in front of a real fake upstream on 127.0.0.1 and reads the pages with
the standard library, not with the proxy's own parsers.
"""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import quote, urljoin

import httpx
import pytest

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.sdists import build_sdist, pkg_info
from tests.support.stack import JSON, MakeStack, Stack, anchors, sha256, wheel

TORCH = "torch-2.7.0.dev20250116+cu126"
AARCH64 = f"{TORCH}-cp311-cp311-linux_aarch64.whl"
X86_64 = f"{TORCH}-cp311-cp311-manylinux_2_28_x86_64.whl"
HTML_V1 = "application/vnd.pypi.simple.v1+html"


def _content_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def _demo_index() -> FakeIndex:
    """A small project with a yanked file, requires-python, upload times and an sdist."""
    return FakeIndex.from_files(
        {
            "demo-pkg": [
                wheel(
                    "demo_pkg-0.9-py3-none-any.whl",
                    ["idna"],
                    requires_python=">=3.8",
                    yanked="broken build",
                    upload_time="2024-03-01T10:00:00.000000Z",
                ),
                wheel(
                    "demo_pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
                    ["idna", 'numpy; python_version >= "3.10"'],
                    requires_python=">=3.10",
                    upload_time="2024-04-01T10:00:00.000000Z",
                ),
                wheel(
                    "demo_pkg-1.0-cp312-cp312-win_amd64.whl",
                    ["idna"],
                    requires_python=">=3.10",
                    upload_time="2024-04-01T11:00:00.000000Z",
                ),
                FakeFile(
                    filename="demo_pkg-1.0.tar.gz",
                    # A real one: the wheels of 1.0 disagree, so a meld reads its PKG-INFO.
                    content=build_sdist("demo_pkg-1.0.tar.gz", pkg_info("demo-pkg", "1.0", ("idna",))),
                    upload_time="2024-04-01T09:00:00.000000Z",
                ),
            ]
        }
    )


# -- content negotiation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [
        (None, None, "text/html"),
        ("*/*", None, "text/html"),
        ("text/html", None, "text/html"),
        (JSON, None, JSON),
        ("application/vnd.pypi.simple.latest+json", None, JSON),
        (HTML_V1, None, HTML_V1),
        (f"{JSON};q=0.5, text/html;q=0.9", None, "text/html"),
        (f"{JSON};q=0.9, text/html;q=0.5", None, JSON),
        (f"text/html, {JSON};q=0.1", None, "text/html"),
        (f"{JSON}, {HTML_V1};q=0.2, text/html;q=0.01", None, JSON),
        ("image/png, */*;q=0.1", None, "text/html"),
        (None, JSON, JSON),
        ("text/html", JSON, JSON),
        (JSON, "text/html", "text/html"),
    ],
)
def test_accept_negotiation(shared_seed: Stack, accept: str | None, query: str | None, expected: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    params = {"format": query} if query is not None else None
    response = shared_seed.client.get(shared_seed.page("torch"), headers=headers, params=params)
    assert response.status_code == 200
    assert _content_type(response) == expected
    assert "accept" in response.headers.get("vary", "").lower()
    if expected == JSON:
        assert response.json()["name"] == "torch"
    else:
        assert any(a["#text"] == AARCH64 for a in anchors(response.text))


@pytest.mark.parametrize(
    ("accept", "query"), [("image/png", None), (f"{JSON};q=0, text/html;q=0", None), (None, "image/png")]
)
def test_unacceptable_is_406(shared_seed: Stack, accept: str | None, query: str | None) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    params = {"format": query} if query is not None else None
    response = shared_seed.client.get(shared_seed.page("torch"), headers=headers, params=params)
    assert response.status_code == 406
    assert "\n" not in response.text.strip()


# -- names and redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "canonical"),
    [
        ("Typing_Extensions", "typing-extensions"),
        ("Jinja2", "jinja2"),
        ("nvidia.nccl.cu12", "nvidia-nccl-cu12"),
    ],
)
def test_non_normalized_name_redirects(shared_seed: Stack, asked: str, canonical: str) -> None:
    response = shared_seed.client.get(shared_seed.page(asked))
    assert response.status_code == 301
    assert httpx.URL(response.headers["location"]).path == shared_seed.page(canonical)
    followed = shared_seed.client.get(urljoin(str(response.url), response.headers["location"]))
    assert followed.status_code == 200


def test_page_without_slash_redirects(make_stack: MakeStack, pypi_torch_index: FakeIndex) -> None:
    stack = make_stack(pypi_torch_index, pep658=True, link_style="absolute")
    response = stack.client.get("/simple/torch")
    assert response.status_code == 301
    assert httpx.URL(response.headers["location"]).path == "/simple/torch/"
    assert stack.client.get("/simple/torch/").status_code == 200


def test_unknown_project_is_404(shared_seed: Stack) -> None:
    response = shared_seed.client.get(shared_seed.page("no-such-project"))
    assert response.status_code == 404


# -- the project list ------------------------------------------------------------------------------


def test_root_list_html_and_json(shared_seed: Stack, pytorch_index: FakeIndex) -> None:
    html_response = shared_seed.client.get(shared_seed.base + "/")
    assert html_response.status_code == 200
    assert _content_type(html_response) == "text/html"
    links = anchors(html_response.text)
    assert sorted(a["#text"] for a in links) == sorted(pytorch_index.projects)
    for link in links:
        target = urljoin(str(html_response.url), link["href"] or "")
        assert target.startswith(shared_seed.proxy.url + shared_seed.base + "/"), target
    as_json = shared_seed.client.get(shared_seed.base + "/", headers={"Accept": JSON})
    assert _content_type(as_json) == JSON
    names = sorted(p["name"] for p in as_json.json()["projects"])
    assert names == sorted(pytorch_index.projects)


def test_root_list_from_json_upstream(make_stack: MakeStack) -> None:
    stack = make_stack(_demo_index(), format="json")
    response = stack.client.get("/simple/", headers={"Accept": JSON})
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["projects"]] == ["demo-pkg"]


# -- file links ------------------------------------------------------------------------------------


def test_file_links_point_at_the_proxy_and_keep_names(seed: Stack, pytorch_index: FakeIndex) -> None:
    response = seed.client.get(seed.page("torch"))
    links = anchors(response.text)
    expected = [f.filename for f in pytorch_index.projects["torch"]]
    assert [a["#text"] for a in links] == expected
    for link in links:
        href = link["href"] or ""
        url, _, _fragment = href.partition("#")
        assert url == quote(link["#text"] or "", safe=""), "relative, the file name, '+' as %2B"
        assert "%2B" in url
    # Following a link through the proxy gives upstream's bytes.
    target = urljoin(str(response.url), links[0]["href"] or "")
    assert target.startswith(seed.proxy.url + seed.page("torch"))
    got = seed.client.get(target)
    assert got.status_code == 200
    assert got.content == pytorch_index.file(expected[0]).content


def test_json_file_urls_are_relative_to_the_proxy(shared_seed: Stack) -> None:
    page = shared_seed.json_page("torch")
    for entry in page["files"]:
        assert entry["url"].split("#")[0] == quote(entry["filename"], safe="")
        assert "127.0.0.1" not in entry["url"]


def test_upstream_sha256_kept(make_stack: MakeStack, pypi_torch_index: FakeIndex) -> None:
    stack = make_stack(pypi_torch_index, pep658=True, link_style="absolute")
    upstream_hashes = {f.filename: dict(f.hashes or {})["sha256"] for f in pypi_torch_index.projects["torch"]}
    page = stack.json_page("torch")
    assert {e["filename"]: e["hashes"].get("sha256") for e in page["files"]} == upstream_hashes
    html_text = stack.client.get("/simple/torch/").text
    for link in anchors(html_text):
        assert (link["href"] or "").endswith("#sha256=" + upstream_hashes[link["#text"] or ""])
        assert not (link["href"] or "").startswith("http"), "files go through the proxy"


def test_no_hash_invented_for_a_nightly_file_before_the_proxy_holds_it(
    seed: Stack, pytorch_index: FakeIndex
) -> None:
    page = seed.json_page("torch")
    assert all(e["hashes"] == {} or "sha256" not in e["hashes"] for e in page["files"])
    assert all("#" not in (a["href"] or "") for a in anchors(seed.client.get(seed.page("torch")).text))
    content = pytorch_index.file(AARCH64).content
    assert content is not None
    got = seed.client.get(seed.file("torch", AARCH64))
    assert got.status_code == 200 and got.content == content
    after = {e["filename"]: e["hashes"].get("sha256") for e in seed.json_page("torch")["files"]}
    assert after[AARCH64] == sha256(content), "once verified and cached, the hash is known"
    assert after[X86_64] is None, "still no hash for a file the proxy does not hold"


def test_upload_time_from_html_upstream_served_as_pep700(
    shared_seed: Stack, pytorch_index: FakeIndex
) -> None:
    page = shared_seed.json_page("torch")
    assert page["meta"]["api-version"] >= "1.1"
    for entry in page["files"]:
        upstream = pytorch_index.file(entry["filename"]).upload_time
        assert upstream is not None
        served = datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00"))
        assert served == datetime.fromisoformat(upstream.replace("Z", "+00:00"))


@pytest.mark.parametrize("upstream_format", ["html", "json"])
def test_yanked_requires_python_and_upload_time_kept(make_stack: MakeStack, upstream_format: str) -> None:
    index = _demo_index()
    stack = make_stack(index, format=upstream_format, pep658=False, hashes=True)
    page = stack.json_page("demo-pkg")
    files = {e["filename"]: e for e in page["files"]}
    assert list(files) == [f.filename for f in index.projects["demo-pkg"]]
    assert files["demo_pkg-0.9-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["demo_pkg-1.0-cp312-cp312-win_amd64.whl"].get("yanked", False) is False
    assert files["demo_pkg-0.9-py3-none-any.whl"]["requires-python"] == ">=3.8"
    assert files["demo_pkg-1.0-cp312-cp312-win_amd64.whl"]["requires-python"] == ">=3.10"
    assert "requires-python" not in files["demo_pkg-1.0.tar.gz"] or files["demo_pkg-1.0.tar.gz"][
        "requires-python"
    ] in (None, "")
    for f in index.projects["demo-pkg"]:
        served = files[f.filename]
        assert served["hashes"]["sha256"] == sha256(f.content or b"")
        assert served["upload-time"].replace(".000000", "") == (f.upload_time or "").replace(".000000", "")
    assert set(page["versions"]) == {"0.9", "1.0"}
    html_links = {a["#text"]: a for a in anchors(stack.client.get("/simple/demo-pkg/").text)}
    assert html_links["demo_pkg-0.9-py3-none-any.whl"]["data-yanked"] == "broken build"
    assert "data-yanked" not in html_links["demo_pkg-1.0-cp312-cp312-win_amd64.whl"]
    assert html_links["demo_pkg-0.9-py3-none-any.whl"]["data-requires-python"] == ">=3.8"
    # An sdist has no core metadata to advertise.
    sdist = html_links["demo_pkg-1.0.tar.gz"]
    assert "data-core-metadata" not in sdist and "data-dist-info-metadata" not in sdist
    assert files["demo_pkg-1.0.tar.gz"].get("core-metadata", False) is False


def test_json_upstream_size_kept(make_stack: MakeStack) -> None:
    """PEP 700 makes ``size`` mandatory in JSON; a JSON upstream gives it, so the proxy has it."""
    index = _demo_index()
    stack = make_stack(index, format="json")
    files = {e["filename"]: e for e in stack.json_page("demo-pkg")["files"]}
    for f in index.projects["demo-pkg"]:
        assert files[f.filename].get("size") == f.body_size


# -- core metadata advertised (PEP 658 / 714) --------------------------------------------------------


def _advertised(stack: Stack, project: str) -> tuple[dict[str, object], dict[str, object]]:
    """filename -> advertised core metadata value, from the JSON page and from the HTML page."""
    from_json: dict[str, object] = {}
    for entry in stack.json_page(project)["files"]:
        if entry["filename"].endswith(".whl"):
            assert entry.get("core-metadata") == entry.get("dist-info-metadata"), "PEP 714: both names"
            from_json[entry["filename"]] = entry.get("core-metadata")
    from_html: dict[str, object] = {}
    for link in anchors(stack.client.get(stack.page(project)).text):
        name = link["#text"] or ""
        if name.endswith(".whl"):
            assert link.get("data-core-metadata") == link.get("data-dist-info-metadata"), "PEP 714"
            value = link.get("data-core-metadata")
            from_html[name] = True if value == "true" else value
    return from_json, from_html


def _check_advertised(before: dict[str, object], served: dict[str, bytes], *, html: bool) -> None:
    for name, value in before.items():
        assert value is not None and value is not False, f"{name} advertises no metadata"
        if value is True:
            continue
        expected = ("sha256=" if html else "") + sha256(served[name])
        assert value == (expected if html else {"sha256": sha256(served[name])}), name


@pytest.mark.parametrize("setup", ["seed", "pypi-pep658", "agreeing-pep658", "json-no-pep658"])
def test_advertised_core_metadata_is_what_we_serve(
    setup: str, make_stack: MakeStack, pytorch_index: FakeIndex, pypi_torch_index: FakeIndex
) -> None:
    if setup == "seed":
        stack = make_stack(
            pytorch_index, prefix="/whl/nightly/cu126", pep658=False, hashes=False, link_style="relative"
        )
        project = "torch"
    elif setup == "pypi-pep658":
        stack = make_stack(pypi_torch_index, pep658=True, link_style="absolute")
        project = "torch"
    elif setup == "agreeing-pep658":
        stack = make_stack(_agreeing_index(), pep658=True, format="json")
        project = "same"
    else:
        stack = make_stack(_demo_index(), pep658=False, format="json")
        project = "demo-pkg"
    json_before, html_before = _advertised(stack, project)
    served: dict[str, bytes] = {}
    by_client: set[str] = set()
    for name in json_before:
        response = stack.client.get(stack.file(project, name, ".metadata"))
        assert response.status_code == 200, response.text
        served[name] = response.content
        if response.headers.get("vary") == "User-Agent":
            by_client.add(name)  # rewritten by the meld: pip is served the wheel's own
    _check_advertised(json_before, served, html=False)
    _check_advertised(html_before, served, html=True)
    json_after, html_after = _advertised(stack, project)
    _check_advertised(json_after, served, html=False)
    _check_advertised(html_after, served, html=True)
    # Once everything was served, the proxy knows every hash: none is left at `true` but those of
    # files whose answer depends on the client (no one hash is true of them).
    assert all((v is True) == (name in by_client) for name, v in json_after.items()), json_after
    assert setup != "seed" or by_client, "the seed's aarch64 torch wheels are rewritten"


def _agreeing_index() -> FakeIndex:
    requires = ["idna>=3", 'colorama; sys_platform == "win32"']
    return FakeIndex.from_files(
        {
            "same": [
                wheel("same-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", requires),
                wheel("same-2.0-cp311-cp311-macosx_11_0_arm64.whl", requires),
                wheel("same-2.0-cp311-cp311-win_amd64.whl", requires),
            ]
        }
    )


def test_rewritten_metadata_never_advertises_upstreams_hash(
    make_stack: MakeStack, pypi_torch_index: FakeIndex
) -> None:
    stack = make_stack(pypi_torch_index, pep658=True, link_style="absolute")
    upstream = {f.filename: f.metadata_sha256() for f in pypi_torch_index.projects["torch"]}
    rewritten = 0
    for name, original in upstream.items():
        served = stack.client.get(stack.file("torch", name, ".metadata")).content
        if sha256(served) != original:
            rewritten += 1
    assert rewritten > 0, "torch 2.1.0's wheels disagree: some metadata must be rewritten"
    page = stack.json_page("torch")
    for entry in page["files"]:
        served = stack.client.get(stack.file("torch", entry["filename"], ".metadata")).content
        assert entry["core-metadata"] in (True, {"sha256": sha256(served)})
        if sha256(served) != upstream[entry["filename"]]:
            assert entry["core-metadata"] != {"sha256": upstream[entry["filename"]]}


def test_html_page_is_valid_pep503_with_metadata_attributes(shared_seed: Stack) -> None:
    text = shared_seed.client.get(shared_seed.page("torch")).text
    assert text.lstrip().lower().startswith("<!doctype html>")
    for link in anchors(text):
        value = link.get("data-core-metadata") or ""
        assert value == "true" or value.startswith("sha256="), value
    assert json.loads(json.dumps(shared_seed.json_page("torch")))["name"] == "torch"


def test_expired_page_is_revalidated_with_its_validators(make_stack: MakeStack) -> None:
    stack = make_stack(_demo_index(), format="json", route={"page_ttl": 0.0})
    first = stack.client.get("/simple/demo-pkg/", headers={"Accept": JSON})
    second = stack.client.get("/simple/demo-pkg/", headers={"Accept": JSON})
    assert second.status_code == 200 and second.content == first.content
    pages = stack.upstream.requests_for("/simple/demo-pkg/")
    assert len(pages) == 2
    assert "if-none-match" in pages[1].headers or "if-modified-since" in pages[1].headers
    assert pages[1].status == 304


def test_project_kept_upstream_under_a_non_normalized_directory(make_stack: MakeStack) -> None:
    index = FakeIndex.from_files({"typing_extensions": [wheel("typing_extensions-4.12.2-py3-none-any.whl")]})
    stack = make_stack(index, prefix="/whl/nightly/cu126", hashes=False)
    normalized = stack.client.get(stack.page("typing-extensions"))
    assert normalized.status_code == 200
    assert any(a["#text"] == "typing_extensions-4.12.2-py3-none-any.whl" for a in anchors(normalized.text))
