"""The fake upstream itself: pages, links, PEP 658, ranges, validators, faults, log, lifecycle."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.fake_index import FIXTURES_DIR
from tests.support.upstream import FakeFile, FakeIndex, Fault, UpstreamServer
from tests.support.wheels import build_wheel, dist_info_dir, metadata_from_fields

TORCH_X86 = "torch-2.7.0.dev20250116+cu126-cp312-cp312-manylinux_2_28_x86_64.whl"
HREF = re.compile(r'<a href="([^"]+)"([^>]*)>([^<]+)</a>')

MakeUpstream = Callable[..., UpstreamServer]


def _small_index() -> FakeIndex:
    filename = "demo_pkg-1.0-py3-none-any.whl"
    metadata = metadata_from_fields("demo-pkg", "1.0", ["six"])
    wheel = build_wheel(filename, metadata, payload_size=1000)
    return FakeIndex.from_files({"demo-pkg": [FakeFile(filename, content=wheel, metadata=metadata)]})


def test_the_seed_index_is_complete_and_fast_to_build() -> None:
    started = time.perf_counter()
    index = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
    assert time.perf_counter() - started < 1.0
    assert len(index.projects) == 29
    assert len(index.filenames) == 114
    torch = index.file(TORCH_X86)
    assert torch.content is not None and torch.metadata is not None
    with zipfile.ZipFile(io.BytesIO(torch.content)) as zf:
        assert zf.read(f"{dist_info_dir(TORCH_X86)}/METADATA") == torch.metadata
    assert b"Requires-Dist: nvidia-nccl-cu12" in torch.metadata
    aarch64 = index.file(TORCH_X86.replace("cp312-cp312-manylinux_2_28_x86_64", "cp312-cp312-linux_aarch64"))
    assert aarch64.metadata is not None and b"nvidia" not in aarch64.metadata


def test_pytorch_root_and_project_pages(pytorch_upstream: UpstreamServer) -> None:
    root = httpx.get(pytorch_upstream.index_url)
    assert root.status_code == 200
    assert root.url.path == "/whl/nightly/cu126/"
    assert len(HREF.findall(root.text)) == 29
    page = httpx.get(pytorch_upstream.index_url + "torch/", headers={"Accept": "application/json"})
    assert page.headers["content-type"].startswith("text/html")  # Accept ignored, like PyTorch
    links = HREF.findall(page.text)
    assert len(links) == 11
    href, attrs, _text = next(link for link in links if link[2] == TORCH_X86)
    assert href == TORCH_X86.replace("+", "%2B")  # relative, no #sha256 on nightlies
    assert 'data-requires-python="&gt;=3.9.0"' in attrs
    assert 'data-upload-time="2025-01-16T08:00:00.000000Z"' in attrs
    assert "core-metadata" not in attrs
    wheel = httpx.get(urljoin(str(page.url), href))
    assert wheel.content == pytorch_upstream.index.file(TORCH_X86).content
    assert httpx.get(urljoin(str(page.url), href) + ".metadata").status_code == 404


@pytest.mark.parametrize(
    ("style", "pattern"),
    [
        ("relative", r"^demo_pkg-1\.0-py3-none-any\.whl#sha256="),
        ("root-relative", r"^/idx/demo_pkg-1\.0-py3-none-any\.whl#sha256="),
        ("absolute", r"^http://127\.0\.0\.1:\d+/idx/demo-pkg/demo_pkg-1\.0-py3-none-any\.whl#sha256="),
    ],
)
def test_link_styles_resolve_to_the_file(make_upstream: MakeUpstream, style: str, pattern: str) -> None:
    up = make_upstream(_small_index(), link_style=style, prefix="/idx/")
    page_url = up.index_url + "demo-pkg/"
    ((href, _attrs, _text),) = HREF.findall(httpx.get(page_url).text)
    assert re.match(pattern, href)
    url, _, digest = urljoin(page_url, href).partition("#sha256=")
    body = httpx.get(url).content
    assert hashlib.sha256(body).hexdigest() == digest


def test_pep658_metadata_is_served_and_advertised(pypi_torch_upstream: UpstreamServer) -> None:
    files = {
        f["filename"]: f for f in json.loads((FIXTURES_DIR / "pypi-torch-2.1.0" / "files.json").read_text())
    }
    page = httpx.get(pypi_torch_upstream.index_url + "torch/")
    links = HREF.findall(page.text)
    assert len(links) == 20
    for href, attrs, filename in links:
        url, _, digest = href.partition("#sha256=")
        assert url.startswith(pypi_torch_upstream.url + "/simple/torch/")
        assert digest == files[filename]["hashes"]["sha256"]  # real hash, not of the tiny body
        meta = httpx.get(url + ".metadata")
        expected = (FIXTURES_DIR / "pypi-torch-2.1.0" / f"{filename}.metadata").read_bytes()
        assert meta.content == expected
        meta_hash = hashlib.sha256(expected).hexdigest()
        assert f'data-core-metadata="sha256={meta_hash}"' in attrs
        assert f'data-dist-info-metadata="sha256={meta_hash}"' in attrs


@pytest.mark.parametrize(
    ("accept", "format_param", "content_type"),
    [
        ("", "", "text/html"),
        ("application/vnd.pypi.simple.v1+json", "", "application/vnd.pypi.simple.v1+json"),
        ("application/vnd.pypi.simple.latest+json", "", "application/vnd.pypi.simple.v1+json"),
        (
            "application/vnd.pypi.simple.v1+json;q=0.2, application/vnd.pypi.simple.v1+html;q=0.5",
            "",
            "application/vnd.pypi.simple.v1+html",
        ),
        ("text/html, application/vnd.pypi.simple.v1+json;q=0.9", "", "text/html"),
        ("application/xml", "", "text/html"),
        ("*/*", "", "text/html"),
        ("application/*", "", "application/vnd.pypi.simple.v1+html"),
        ("text/html", "application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+json"),
    ],
)
def test_json_format_negotiates(
    pypi_torch_upstream: UpstreamServer, accept: str, format_param: str, content_type: str
) -> None:
    pypi_torch_upstream.set_options(format="json")
    params = {"format": format_param} if format_param else {}
    page = httpx.get(pypi_torch_upstream.index_url + "torch/", headers={"Accept": accept}, params=params)
    assert page.headers["content-type"].split(";")[0] == content_type
    assert page.headers["vary"] == "Accept"
    if content_type.endswith("json"):
        data = page.json()
        assert data["meta"]["api-version"] == "1.1"
        assert data["versions"] == ["2.1.0"]
        first = data["files"][0]
        assert first["upload-time"] == "2023-10-04T16:53:01.826100Z"
        assert first["size"] == 670168911
        assert first["core-metadata"] == first["dist-info-metadata"]


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "piece"),
    [
        ("bytes=-10", 206, "bytes 990-999/1000", slice(990, 1000)),
        ("bytes=0-9", 206, "bytes 0-9/1000", slice(0, 10)),
        ("bytes=995-", 206, "bytes 995-999/1000", slice(995, 1000)),
        ("bytes=990-5000", 206, "bytes 990-999/1000", slice(990, 1000)),
        ("bytes=-5000", 206, "bytes 0-999/1000", slice(0, 1000)),
        ("bytes=1000-", 416, "bytes */1000", slice(0, 0)),
        ("bytes=-0", 416, "bytes */1000", slice(0, 0)),
        ("bytes=0-1,5-6", 200, None, slice(0, 1000)),
        ("bytes=9-2", 200, None, slice(0, 1000)),
        ("items=0-1", 200, None, slice(0, 1000)),
    ],
)
@pytest.mark.parametrize("on_disk", [False, True])
def test_ranges(
    make_upstream: MakeUpstream,
    tmp_path: Path,
    range_header: str,
    status: int,
    content_range: str | None,
    piece: slice,
    on_disk: bool,
) -> None:
    body = bytes(range(250)) * 4
    path = tmp_path / "blob-1.0-py3-none-any.whl"
    path.write_bytes(body)
    file = FakeFile(path.name, path=path) if on_disk else FakeFile(path.name, content=body)
    up = make_upstream(FakeIndex.from_files({"blob": [file]}))
    answer = httpx.get(f"{up.url}/blob/{path.name}", headers={"Range": range_header})
    assert answer.status_code == status
    assert answer.headers.get("content-range") == content_range
    assert answer.headers["accept-ranges"] == "bytes"
    if status != 416:
        assert answer.content == body[piece]
    up.set_options(ranges=False)
    plain = httpx.get(f"{up.url}/blob/{path.name}", headers={"Range": range_header})
    assert (plain.status_code, plain.content, "accept-ranges" in plain.headers) == (200, body, False)
    assert [r.status for r in up.log.records()] == [status, 200]


def test_head_sends_headers_only(pytorch_upstream: UpstreamServer) -> None:
    url = pytorch_upstream.file_url(TORCH_X86)
    answer = httpx.head(url)
    assert answer.status_code == 200
    assert int(answer.headers["content-length"]) == len(pytorch_upstream.index.file(TORCH_X86).content or b"")
    assert answer.content == b""
    (record,) = pytorch_upstream.requests_for(TORCH_X86)
    assert (record.method, record.bytes_sent) == ("HEAD", 0)


def test_pages_answer_conditional_requests(pytorch_upstream: UpstreamServer) -> None:
    url = pytorch_upstream.index_url + "torch/"
    first = httpx.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert httpx.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    assert httpx.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}).status_code == 200
    pytorch_upstream.set_options(validators=False)
    assert "etag" not in httpx.get(url, headers={"If-None-Match": etag}).headers


def test_paths_outside_the_layout_are_404(pytorch_upstream: UpstreamServer) -> None:
    base = pytorch_upstream.url
    for path in ["/torch/", "/whl/nightly/cu126/Torch/", "/whl/nightly/cu126/numpy/" + TORCH_X86, "/x/y/z/w"]:
        assert httpx.get(base + path).status_code == 404, path
    # Files answer at <prefix>/<project>/<file> and at <prefix>/<file> (root-relative links).
    assert httpx.get(f"{base}/whl/nightly/cu126/{TORCH_X86}").status_code == 200
    assert httpx.post(pytorch_upstream.index_url).status_code == 405


def test_faults(pytorch_upstream: UpstreamServer) -> None:
    url = pytorch_upstream.file_url(TORCH_X86)
    body = pytorch_upstream.index.file(TORCH_X86).content or b""
    pytorch_upstream.inject_fault(".whl", Fault(status=503, times=1))
    assert httpx.get(url).status_code == 503
    assert httpx.get(url).content == body  # only the first request
    pytorch_upstream.inject_fault(".whl", Fault(reset_after=100))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert pytorch_upstream.requests_for(".whl")[-1].bytes_sent == 100
    pytorch_upstream.inject_fault(".whl", Fault(truncate_to=100))
    assert httpx.get(url).content == body[:100]
    pytorch_upstream.inject_fault(".whl", Fault(wrong_bytes=True))
    wrong = httpx.get(url).content
    assert len(wrong) == len(body) and wrong != body
    pytorch_upstream.inject_fault(".whl", Fault(chunk_size=500, chunk_delay_ms=50))
    started = time.perf_counter()
    assert httpx.get(url).content == body
    assert time.perf_counter() - started >= 0.1
    pytorch_upstream.clear_faults()
    assert httpx.get(url).content == body


def test_latency(pytorch_upstream: UpstreamServer) -> None:
    pytorch_upstream.set_options(latency_ms=150)
    started = time.perf_counter()
    httpx.get(pytorch_upstream.index_url)
    assert time.perf_counter() - started >= 0.15


def test_request_log(pytorch_upstream: UpstreamServer) -> None:
    url = pytorch_upstream.file_url(TORCH_X86)
    with httpx.Client() as client:
        client.get(url, headers={"Range": "bytes=-100"})
        client.get(url + ".metadata")
        client.get(pytorch_upstream.index_url)
    records = pytorch_upstream.log.records()
    assert [(r.status, r.range) for r in records] == [(206, "bytes=-100"), (404, None), (200, None)]
    assert pytorch_upstream.requests_for(".whl")[0].bytes_sent == 100
    assert pytorch_upstream.bytes_sent_total() == sum(r.bytes_sent for r in records)
    assert pytorch_upstream.bytes_sent_total(".whl") == 100
    pytorch_upstream.log.reset()
    assert len(pytorch_upstream.log) == 0


def test_set_index_replaces_what_is_served(pytorch_upstream: UpstreamServer) -> None:
    pytorch_upstream.set_index(_small_index())
    assert httpx.get(pytorch_upstream.index_url + "torch/").status_code == 404
    assert httpx.get(pytorch_upstream.index_url + "demo-pkg/").status_code == 200


def test_stops_cleanly_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with UpstreamServer(_small_index()) as up:
        url = up.index_url
        with httpx.Client() as client:  # an idle keep-alive connection must not block shutdown
            assert client.get(url).status_code == 200
            started = time.perf_counter()
            up.stop()
            assert time.perf_counter() - started < 3
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_the_script_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.upstream",
            "--fixture",
            "pytorch",
            "--format",
            "json",
            "--pep658",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/whl/nightly/cu126/)", line)
        assert url, line
        page = httpx.get(url.group(1) + "torch/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert "core-metadata" in page.json()["files"][0]
    finally:
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert returncode == 0
