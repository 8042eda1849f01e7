"""Faithful header-level rewriting: only Requires-Dist / Provides-Extra / Metadata-Version change."""

from __future__ import annotations

import pytest

from proxy.meld.metadata import MalformedMetadata, rewrite, scan

FOLDED = (
    b"Metadata-Version: 2.1\r\n"
    b"Name: demo\r\n"
    b"Version: 1.0\r\n"
    b"Author: Ren\xe9 \xc3\xa9\r\n"  # one Latin-1 byte (not UTF-8) and one UTF-8 character
    b"Description: first line\r\n"
    b"        |second line\r\n"
    b"Requires-Dist: numpy (>=1.20) ;\r\n"
    b"  python_version >= '3.9'\r\n"
    b"Requires-Dist: jinja2\r\n"
    b"Provides-Extra: dynamo\r\n"
    b"Requires-Dist: jinja2 ; extra == 'dynamo'\r\n"
    b"\r\n"
    b"Body \xff\xfe bytes\r\n\r\nRequires-Dist: not-a-header-in-the-body\r\n"
)


def test_scan_reads_folded_headers_and_keeps_the_body_apart() -> None:
    scanned = scan(FOLDED)
    assert scanned.eol == "\r\n"
    assert scanned.values("requires-dist") == [
        "numpy (>=1.20) ; python_version >= '3.9'",
        "jinja2",
        "jinja2 ; extra == 'dynamo'",
    ]
    assert scanned.first("Description") == "first line |second line"
    assert scanned.rest.startswith(b"\r\nBody \xff\xfe")


def test_rewrite_with_nothing_to_do_is_byte_identical() -> None:
    assert rewrite(scan(FOLDED), {}, [], []) == FOLDED


def test_rewrite_replaces_and_appends_keeping_everything_else() -> None:
    scanned = scan(FOLDED)
    folded_start = scanned.lines_of("Requires-Dist")[0].start
    out = rewrite(
        scanned, {folded_start: 'numpy>=1.20; python_version >= "3.9"'}, ["torch>=2"], ["opt-einsum"]
    )
    assert out == (
        b"Metadata-Version: 2.1\r\n"
        b"Name: demo\r\n"
        b"Version: 1.0\r\n"
        b"Author: Ren\xe9 \xc3\xa9\r\n"
        b"Description: first line\r\n"
        b"        |second line\r\n"
        b'Requires-Dist: numpy>=1.20; python_version >= "3.9"\r\n'
        b"Requires-Dist: jinja2\r\n"
        b"Provides-Extra: dynamo\r\n"
        b"Provides-Extra: opt-einsum\r\n"
        b"Requires-Dist: jinja2 ; extra == 'dynamo'\r\n"
        b"Requires-Dist: torch>=2\r\n"
        b"\r\n"
        b"Body \xff\xfe bytes\r\n\r\nRequires-Dist: not-a-header-in-the-body\r\n"
    )


@pytest.mark.parametrize(
    ("version", "requirements", "extras", "expected"),
    [
        ("1.0", ["x"], [], b"Metadata-Version: 1.2\n"),
        ("1.1", ["x"], ["cuda"], b"Metadata-Version: 2.1\n"),
        ("1.2", [], ["cuda"], b"Metadata-Version: 2.1\n"),
        ("2.1", [], ["cuda"], b"Metadata-Version: 2.1\n"),
        ("2.4", ["x"], ["cuda"], b"Metadata-Version: 2.4\n"),
        ("1.2", ["x"], [], b"Metadata-Version: 1.2\n"),
    ],
)
def test_metadata_version_raised_only_as_far_as_needed(
    version: str, requirements: list[str], extras: list[str], expected: bytes
) -> None:
    data = f"Metadata-Version: {version}\nName: demo\nVersion: 1\n\nbody\n".encode()
    out = rewrite(scan(data), {}, requirements, extras)
    assert out.startswith(expected)
    assert out.endswith(
        b"Version: 1\n"
        + b"".join(f"Provides-Extra: {e}\n".encode() for e in extras)
        + b"".join(f"Requires-Dist: {r}\n".encode() for r in requirements)
        + b"\nbody\n"
    )


def test_headers_only_without_trailing_newline() -> None:
    out = rewrite(scan(b"Metadata-Version: 2.1\nName: demo\nVersion: 1"), {}, ["x"], [])
    assert out == b"Metadata-Version: 2.1\nName: demo\nVersion: 1\nRequires-Dist: x\n"


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\nbody", b"  folded first\nName: x\n", b"Name x\n", b"Na me: x\n", b"\x00\x01garbage"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMetadata):
        scan(data)


def test_rewrite_can_remove_a_folded_requirement() -> None:
    scanned = scan(FOLDED)
    out = rewrite(scanned, {scanned.lines_of("Requires-Dist")[0].start: None}, [], [])
    assert b"numpy" not in out.partition(b"\r\n\r\n")[0]
    assert out.count(b"\r\n") == FOLDED.count(b"\r\n") - 2
