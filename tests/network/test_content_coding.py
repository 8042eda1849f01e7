"""The bounded body decoder of pages and small files, on its own: any body in any chunks decodes to
itself, in pieces no bigger than one step; what does not decode is a ``ContentDecodingError``."""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.network.content_coding import _PIECE, ContentDecoder, ContentDecodingError


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "": lambda data: data,
    "identity": lambda data: data,
    "gzip, identity": gzip.compress,
}


def _decode(coding: str, body: bytes, cuts: list[int]) -> bytes:
    decoder = ContentDecoder(coding)
    out = bytearray()
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    for start, end in itertools.pairwise(bounds):
        for piece in decoder.decode(body[start:end]):
            assert len(piece) <= _PIECE or coding in ("", "identity")
            out += piece
    for piece in decoder.finish():
        out += piece
    return bytes(out)


@given(
    st.binary(max_size=5000),
    st.sampled_from(sorted(CODINGS)),
    st.lists(st.integers(0, 10**6), max_size=6),  # where the body is cut into chunks
)
def test_any_body_in_any_chunks_decodes_to_itself(data: bytes, coding: str, cuts: list[int]) -> None:
    assert _decode(coding, CODINGS[coding](data), cuts) == data


@pytest.mark.parametrize(
    ("coding", "body", "expected"),
    [
        ("deflate", _raw_deflate(b"raw" * 1000), b"raw" * 1000),  # deflate without the zlib wrapper
        ("deflate", zlib.compress(b"wrapped"), b"wrapped"),
        ("gzip", gzip.compress(b"one") + gzip.compress(b"two"), b"onetwo"),  # two members
        ("gzip", b"", b""),  # an empty body says nothing about its coding
        ("GZIP", gzip.compress(b"x"), b"x"),
    ],
)
def test_what_decodes(coding: str, body: bytes, expected: bytes) -> None:
    assert _decode(coding, body, [1, 7]) == expected


def test_a_bomb_decodes_one_bounded_piece_at_a_time() -> None:
    pieces = ContentDecoder("gzip").decode(gzip.compress(b"\0" * (64 * _PIECE)))
    assert len(next(pieces)) == _PIECE  # nothing beyond this piece has been inflated yet


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(b"abc" * 1000)[:-9]),  # the stream ends early
        ("gzip", gzip.compress(b"abc") + b"junk"),
        ("deflate", zlib.compress(b"abc") + b"junk"),
        ("gzip", b"plain text"),
        ("deflate", b"\xff" * 20),
        ("deflate", b"\x78"),  # one byte of a zlib header, then nothing
        ("br", b"x"),
        ("zstd", b"x"),
        ("gzip, gzip", b"x"),  # stacked codings: no server this proxy meets sends them
    ],
)
def test_what_does_not_decode(coding: str, body: bytes) -> None:
    with pytest.raises(ContentDecodingError):
        _decode(coding, body, [3])
