"""Files the proxy does not understand pass through: PEP 825 variant wheels serve their own metadata
and take no part in a meld; a release's ``variants.json`` is listed, served, and revalidated like a
page (it changes when a variant is added); any other file name a page lists is listed and served."""

from __future__ import annotations

import pytest

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import MakeStack, sha256, wheel
from tests.support.wheels import build_wheel, metadata_from_fields

LINUX = "vlib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
MAC = "vlib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
VARIANT = "vlib-1.0-py3-none-manylinux_2_28_x86_64-cu126.whl"
VARIANTS = "vlib-1.0-variants.json"
OTHER = "vlib-1.0.future-format"
_JSON_V1 = b'{"variants": {"cu126": {}}}'
_JSON_V2 = b'{"variants": {"cu126": {}, "cu128": {}}}'
_VARIANT_METADATA = metadata_from_fields("vlib", "1.0", ["numpy", "nvidia-thing"])


def _index(variants_json: bytes = _JSON_V1, *, hashes: bool = True) -> FakeIndex:
    content = build_wheel("vlib-1.0-py3-none-manylinux_2_28_x86_64.whl", _VARIANT_METADATA)
    listed = None if hashes else {}
    return FakeIndex.from_files(
        {
            "vlib": [
                wheel(LINUX, ["numpy", "six"]),
                wheel(MAC, ["numpy"]),
                FakeFile(VARIANT, content=content, metadata=_VARIANT_METADATA),
                FakeFile(VARIANTS, content=variants_json, hashes=listed),
                FakeFile(OTHER, content=b"\x00future", hashes=listed),
            ]
        }
    )


@pytest.mark.parametrize("page_format", ["html", "json"])
def test_every_file_is_listed_and_served(make_stack: MakeStack, page_format: str) -> None:
    stack = make_stack(_index(), format=page_format)
    listed = {f["filename"] for f in stack.json_page("vlib")["files"]}
    assert listed == {LINUX, MAC, VARIANT, VARIANTS, OTHER}
    for name, body in ((VARIANTS, _JSON_V1), (OTHER, b"\x00future")):
        response = stack.client.get(stack.file("vlib", name))
        assert response.status_code == 200, (name, response.text)
        assert response.content == body
    assert stack.client.get(stack.file("vlib", "vlib-1.0.not-listed")).status_code == 301


@pytest.mark.parametrize("pep658", [True, False])
def test_a_variant_wheel_serves_its_own_metadata_and_changes_no_meld(
    make_stack: MakeStack, pep658: bool
) -> None:
    stack = make_stack(_index(), pep658=pep658)
    # In no release: the page says of its metadata what upstream said, and serves exactly that.
    listed = {f["filename"]: f.get("core-metadata", False) for f in stack.json_page("vlib")["files"]}
    assert listed[VARIANT] == ({"sha256": sha256(_VARIANT_METADATA)} if pep658 else False)
    own = stack.client.get(stack.file("vlib", VARIANT, ".metadata"))
    assert own.status_code == 200, own.text
    assert own.content == _VARIANT_METADATA
    assert own.headers["x-wheelmeld-meld"].startswith("variant")
    melded = stack.client.get(stack.file("vlib", MAC, ".metadata"))
    assert melded.headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-thing" not in melded.text, "the variant's requirements are its own"
    if pep658:
        assert stack.requests(VARIANT) == [], "upstream's own .metadata file"
    else:
        assert all(byte_range for _m, _p, byte_range in stack.requests(VARIANT)), "range requests"


def test_a_cached_variant_wheel_is_read_locally(make_stack: MakeStack) -> None:
    # Measured before: 500 (an unexpected error parsing the name in _read_local_metadata).
    stack = make_stack(_index(), pep658=False)
    assert stack.client.get(stack.file("vlib", VARIANT)).status_code == 200
    again = make_stack(_index(), pep658=False, cache_dir=stack.cache_dir)
    response = again.client.get(again.file("vlib", VARIANT, ".metadata"))
    assert response.status_code == 200, response.text
    assert response.content == _VARIANT_METADATA
    assert again.requests(VARIANT) == [], "read from the cached wheel"


def test_variants_json_is_revalidated_not_immutable(make_stack: MakeStack) -> None:
    stack = make_stack(_index(hashes=False), route={"page_ttl": 0.0})
    first = stack.client.get(stack.file("vlib", VARIANTS))
    assert first.content == _JSON_V1
    assert "immutable" not in first.headers["cache-control"]
    stack.upstream.set_index(_index(_JSON_V2, hashes=False))
    assert stack.client.get(stack.file("vlib", VARIANTS)).content == _JSON_V2


def test_variants_json_whose_listed_hash_matches_needs_no_refetch(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), route={"page_ttl": 0.0})
    for _ in range(2):
        response = stack.client.get(stack.file("vlib", VARIANTS))
        assert response.headers["etag"] == f'"{sha256(_JSON_V1)}"'
    assert len(stack.requests(VARIANTS)) == 1


def test_variants_json_not_matching_its_listed_hash_is_refused(make_stack: MakeStack) -> None:
    index = _index()
    files = list(index.projects["vlib"])
    files[3] = FakeFile(VARIANTS, content=_JSON_V2, hashes={"sha256": sha256(_JSON_V1)})
    stack = make_stack(FakeIndex.from_files({"vlib": files}))
    response = stack.client.get(stack.file("vlib", VARIANTS))
    assert response.status_code == 502
    assert "does not match the sha256" in response.text
    assert not list(stack.cache_dir.rglob(VARIANTS)), "nothing cached"
