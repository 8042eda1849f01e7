"""Lockers that write hashes find them on the links the proxy serves, and need not download files.

``pip-compile --generate-hashes`` (pip-tools 7) reads hashes only from the legacy JSON API
(``<host>/<name>/json``, which the proxy does not serve: 404) and otherwise downloads every file of
each pinned release to hash it, whatever the links carry; that is pip-tools' behaviour (README). What
is ours is that the links carry upstream's sha256 in both formats, which ``uv pip compile
--generate-hashes`` uses as they are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.e2e.e2ekit import Clients
from tests.support.stack import MakeStack, index_of, single_line, wheel

WHEELS = (
    "demo-1.0-py3-none-any.whl",
    "demo-1.0-cp311-cp311-win_amd64.whl",
    "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
)


@pytest.mark.e2e
@pytest.mark.parametrize("upstream_format", ["html", "json"])
def test_uv_compile_generate_hashes_takes_the_hashes_from_the_links(
    make_stack: MakeStack, tmp_path: Path, upstream_format: str
) -> None:
    index = index_of({"demo": [wheel(name) for name in WHEELS]})
    stack = make_stack(index, format=upstream_format, hashes=True, pep658=True)
    (tmp_path / "home").mkdir()
    clients = Clients(home=tmp_path / "home", uv_cache=tmp_path / "uv-cache")
    (tmp_path / "req.in").write_text("demo==1.0\n")
    clients.uv_run(
        "pip", "compile", "--generate-hashes", "--no-header", "--python-version", "3.11",
        "--index-url", f"{stack.proxy.url}/simple", "-o", str(tmp_path / "req.txt"), str(tmp_path / "req.in"),
    )  # fmt: skip
    written = (tmp_path / "req.txt").read_text()
    for name in WHEELS:
        assert f"sha256:{hashlib.sha256(index.file(name).content or b'').hexdigest()}" in written, name
    downloads = [r.path for r in stack.upstream.requests_for(".whl")]
    assert downloads == [], "the hashes were on the links: no wheel needed downloading"


def test_the_legacy_json_api_pip_tools_asks_for_is_a_plain_404(make_stack: MakeStack) -> None:
    stack = make_stack(index_of({"demo": [wheel(WHEELS[0])]}))
    response = stack.client.get("/demo/json")  # what pip-tools derives from --index-url <proxy>/simple
    assert response.status_code == 404 and single_line(response.text)
