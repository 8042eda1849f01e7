"""``MeldState``: the ``X-Wheelmeld-Meld`` text of each state, and which answers may be sent again."""

from __future__ import annotations

import pytest

from proxy.service.meld_state import LeftOut, MeldKind, MeldState


@pytest.mark.parametrize(
    ("state", "header", "settled"),
    [
        (MeldState(MeldKind.OFF), "off", True),
        (MeldState(MeldKind.SINGLE), "single", True),
        (MeldState(MeldKind.AGREE), "agree", True),
        (MeldState(MeldKind.MELDED), "melded", True),
        (MeldState(MeldKind.VARIANT), "variant: served as it is, in no meld (PEP 825)", True),
        (
            MeldState(MeldKind.OWN),
            "own (melded for other clients: this one checks .metadata against the wheel)",
            True,
        ),
        (
            MeldState(MeldKind.UNAVAILABLE, reason="upstream said 503"),
            "unavailable: upstream said 503",
            False,
        ),
        (
            MeldState(MeldKind.MELDED, left_out=LeftOut(2, "x-1.0-py3-none-any.whl", "not UTF-8")),
            "melded; incomplete: 2 wheel(s) left out, e.g. x-1.0-py3-none-any.whl: not UTF-8",
            False,
        ),
    ],
)
def test_each_state_says_what_it_is(state: MeldState, header: str, settled: bool) -> None:
    assert (state.header(), state.settled) == (header, settled)


def test_an_incomplete_state_is_one_bounded_line() -> None:
    state = MeldState(MeldKind.AGREE, left_out=LeftOut.of({"x.whl": "e" * 1000, "y.whl": "f"}))
    assert len(state.header()) == 400 and state.header().startswith("agree; incomplete: 2 wheel(s)")
    assert LeftOut.of({}) is None
