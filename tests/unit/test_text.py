"""Text from clients and upstreams made safe to show: log values, header values, error reasons."""

from __future__ import annotations

import pytest

from proxy.errors import UpstreamError
from proxy.server.answers import header_value
from proxy.text import escape_controls, masked_url


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/simple/torch/", "/simple/torch/"),
        ("/a\ntime=forged", "/a\\ntime=forged"),
        ("\r\x00\x1b[2J\x7f", "\\r\\x00\\x1b[2J\\x7f"),
        ("\x85\u2028\u202e", "\\x85\\u2028\\u202e"),  # NEL, line separator, right-to-left override
        ("zürich €", "zürich €"),  # printable non-ASCII stays readable in a log line
        ("\ud800", "\\ud800"),
    ],
)
def test_escape_controls(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("upstream answered 500", "upstream answered 500"),
        ("bad api-version '€.0'", "bad api-version '\\u20ac.0'"),
        ("two\nlines\tand  spaces", "two lines and spaces"),
        ("nul \x00 and escape \x1b", "nul \\x00 and escape \\x1b"),
        ("ü" * 600, "\\xfc" * 125),
    ],
)
def test_header_values_are_one_bounded_line_of_printable_ascii(text: str, value: str) -> None:
    assert header_value(text) == value
    assert header_value(text).encode("latin-1").decode("ascii").isprintable()


def test_reasons_are_one_printable_line() -> None:
    assert UpstreamError("a\nb\x00c\u202e").reason == "a b\\x00c\\u202e"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://valkey:6379/0", "redis://valkey:6379/0"),
        ("redis://:pw@valkey:6379/0", "redis://:***@valkey:6379/0"),
        ("rediss://user:p%40ss@valkey", "rediss://user:***@valkey"),
        ("redis://user@valkey", "redis://user@valkey"),
        ("redis://:pw@[::1]:6379", "redis://:***@[::1]:6379"),
        ("unix:///run/valkey.sock?password=pw&db=1", "unix:///run/valkey.sock?password=***&db=1"),
        ("redis://:pw@[::1", "redis://***"),  # not a URL: nothing after the scheme
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown
