"""A full cache disk: a release's sdist metadata and a ``variants.json`` are still served, uncached."""

from __future__ import annotations

from pathlib import Path

from tests.server.test_disk_faults import _fill, _not_cached, disk  # noqa: F401 (a fixture)
from tests.server.test_sdist_meld import MAC, SDIST, _index
from tests.server.test_variants import _JSON_V1, VARIANTS
from tests.server.test_variants import _index as _variants_index
from tests.support.stack import MakeStack


def test_sdist_metadata_on_a_full_disk_is_served_uncached(make_stack: MakeStack, disk: Path) -> None:  # noqa: F811
    stack = make_stack(_index(), cache_dir=disk / "cache", pep658=True)
    assert stack.client.get(stack.page("lib")).status_code == 200
    _fill(disk)
    response = stack.client.get(stack.file("lib", MAC, ".metadata"))
    assert response.status_code == 200
    assert response.headers["x-wheelmeld-meld"] == "melded"
    assert len(stack.requests(SDIST)) == 1
    assert _not_cached(stack, "metadata", "full") >= 1


def test_variants_json_on_a_full_disk_is_served_uncached(make_stack: MakeStack, disk: Path) -> None:  # noqa: F811
    stack = make_stack(_variants_index(), cache_dir=disk / "cache")
    assert stack.client.get(stack.page("vlib")).status_code == 200
    _fill(disk)
    response = stack.client.get(stack.file("vlib", VARIANTS))
    assert response.status_code == 200 and response.content == _JSON_V1
    assert _not_cached(stack, "file", "full") == 1
