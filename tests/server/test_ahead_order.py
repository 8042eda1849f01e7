"""Running ahead: which releases it warms beyond the newest (the Requires-Python fork's version,
at most one more per requirement), in which order (breadth-first: a level's pages before its
melds), and that neither changes an answer. Through a real proxy in front of a fake upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.test_ahead import ON, _ask_root, _files, _metrics, _pages, _settle, assert_same_answers
from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer


def _fork() -> FakeIndex:
    """root (Requires-Python >=3.11) -> dep: dep 3.0 wants 3.12, so a universal resolver forks and
    asks for dep 2.1 (the newest admitting 3.11) too; never 2.0 nor 1.0. Below 3.0: deep; below
    the fork's 2.1: below (a leaf: never run ahead)."""
    projects = {
        "root": [wheel("root-1.0-py3-none-any.whl", ["dep"], requires_python=">=3.11")],
        "dep": [
            wheel("dep-1.0-py3-none-any.whl"),
            wheel("dep-2.0-py3-none-any.whl", requires_python=">=3.10"),
            wheel("dep-2.1-py3-none-any.whl", ["below"], requires_python=">=3.11"),
            wheel("dep-3.0-py3-none-any.whl", ["deep"], requires_python=">=3.12"),
        ],
        "deep": [wheel("deep-1.0-py3-none-any.whl")],
        "below": [wheel("below-1.0-py3-none-any.whl")],
    }
    return FakeIndex({name: tuple(files) for name, files in projects.items()})


def test_the_fork_version_is_warmed_and_only_one(make_stack: MakeStack) -> None:
    stack = make_stack(_fork(), config=ON)
    _ask_root(stack)
    _settle(stack)
    read = {f.split("-")[1] for f in _files(stack) if f.startswith("dep-")}
    assert read == {"3.0", "2.1"}, "the newest, and the newest admitting the parent's 3.11; no more"
    assert _pages(stack) == {"root", "dep", "deep"}, "below the newest only: the fork's is a leaf"
    assert _metrics(stack)['wheelmeld_ahead_total{outcome="started"}'] == 2  # dep, then deep


def test_the_fork_version_counts_against_the_release_bound(make_stack: MakeStack) -> None:
    stack = make_stack(_fork(), config={**ON, "meld_run_ahead_releases": 1})
    _ask_root(stack)
    _settle(stack)
    assert {f.split("-")[1] for f in _files(stack) if f.startswith("dep-")} == {"3.0"}
    assert _pages(stack) == {"root", "dep"}


def _two_melds() -> FakeIndex:
    """root -> a, b==1.0 (pinned); each a release of two disagreeing wheels (a meld reads both)."""
    projects = {"root": (wheel("root-1.0-py3-none-any.whl", ["a", "b==1.0"]),)}
    for name in ("a", "b"):
        projects[name] = (
            wheel(f"{name}-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", ["x"]),
            wheel(f"{name}-1.0-cp311-cp311-win_amd64.whl"),
        )
    projects["x"] = (wheel("x-1.0-py3-none-any.whl"),)
    return FakeIndex(projects)


def test_a_levels_pages_go_before_its_melds_and_pins_first(make_stack: MakeStack) -> None:
    # One job and one upstream request at a time: the order of the upstream log is the order of
    # the turns. The pages of the level, then its melds, the pinned b before a (a resolver decides
    # a pin first), then x (the next level).
    stack = make_stack(_two_melds(), config={**ON, "meld_run_ahead_concurrency": 1})
    _ask_root(stack)
    _settle(stack)
    order = []
    for record in stack.upstream.requests_for(""):
        name = record.path.rstrip("/").rsplit("/", 1)[-1]
        step = "page" if record.path.endswith("/") else "meld"
        if name.split("-")[0] in ("a", "b", "x") and (step, name.split("-")[0]) not in order:
            order.append((step, name.split("-")[0]))
    assert order == [("page", "b"), ("page", "a"), ("meld", "b"), ("meld", "a"), ("page", "x"), ("meld", "x")]


# -- the property: the same client requests get the same answers, running ahead or not ------------

_REQUESTS = (
    ("root", None),
    ("root", "root-1.0-py3-none-any.whl"),
    ("dep", None),
    ("dep", "dep-3.0-py3-none-any.whl"),
    ("dep", "dep-2.1-py3-none-any.whl"),
    ("dep", "dep-2.0-py3-none-any.whl"),
    ("deep", "deep-1.0-py3-none-any.whl"),
    ("below", None),
)


@pytest.fixture(scope="module")
def fork_upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(_fork(), UpstreamOptions(prefix="/simple")) as up:
        yield up


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(_REQUESTS), settle=st.lists(st.booleans(), min_size=8, max_size=8))
def test_warming_the_fork_never_changes_an_answer(
    fork_upstream: UpstreamServer, order: list[tuple[str, str | None]], settle: list[bool]
) -> None:
    assert_same_answers(fork_upstream, order, settle)
