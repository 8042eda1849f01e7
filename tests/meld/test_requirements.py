"""Canonical requirement identity: parsed parts compared, not text."""

from __future__ import annotations

import pytest
from packaging.markers import Marker

from proxy.meld.requirements import InvalidRequiresDist, parse_requirement, with_marker


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("torch (==2.5.1)", "torch==2.5.1"),
        ("opt-einsum (>=3.3) ; extra == 'opt-einsum'", "opt-einsum >=3.3 ; extra == 'opt-einsum'"),
        ("opt-einsum>=3.3; extra == 'opt-einsum'", 'opt-einsum >= 3.3 ; extra == "opt-einsum"'),
        ("lxml_html_clean", "lxml-html-clean"),
        ("Typing.Extensions>=4", "typing_extensions >=4"),
        ("Jinja2", "jinja2"),
        ("foo[Bar_Baz,qux]>=1", "foo[qux,bar-baz] >=1"),
        ("numpy>=1.20,<2", "numpy <2, >=1.20"),
        ("numpy==2.0", "numpy==2.0.0"),
        ("pkg @ https://example.invalid/pkg.whl", "pkg@ https://example.invalid/pkg.whl"),
        (
            'nvidia-cudnn-cu12 (==8.9.2.26) ; platform_system == "Linux" and platform_machine == "x86_64"',
            "nvidia-cudnn-cu12==8.9.2.26; platform_system=='Linux' and platform_machine=='x86_64'",
        ),
    ],
)
def test_same_requirement(left: str, right: str) -> None:
    assert parse_requirement(left).key == parse_requirement(right).key
    assert hash(parse_requirement(left).key) == hash(parse_requirement(right).key)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("torch==2.5.1", "torch==2.5.2"),
        ("torch", "torch; sys_platform == 'linux'"),
        ("jinja2", "jinja2; extra == 'dynamo'"),
        ("foo[a]", "foo[b]"),
        ("foo", "foo-bar"),
        ("numpy>=1.20", "numpy>1.20"),
        ("pkg @ https://example.invalid/a.whl", "pkg @ https://example.invalid/b.whl"),
        (
            "x; sys_platform == 'linux' and python_version < '3.10'",
            "x; sys_platform == 'linux' or python_version < '3.10'",
        ),
    ],
)
def test_different_requirement(left: str, right: str) -> None:
    assert parse_requirement(left).key != parse_requirement(right).key


@pytest.mark.parametrize("text", ["", "foo bar", "numpy >= ", "x; platform_foo == '1'", "-e ."])
def test_not_pep_508(text: str) -> None:
    with pytest.raises(InvalidRequiresDist, match="not a PEP 508 requirement"):
        parse_requirement(text)


def test_with_marker_leaves_the_cached_original_alone() -> None:
    original = parse_requirement("jinja2 ; extra == 'dynamo'")
    limited = with_marker(original, Marker("extra == 'dynamo'") & Marker("sys_platform == 'linux'"))
    assert limited.text == 'jinja2; extra == "dynamo" and sys_platform == "linux"'
    assert parse_requirement("jinja2 ; extra == 'dynamo'").text == 'jinja2; extra == "dynamo"'
    assert limited.key.name == original.key.name and limited.key != original.key
