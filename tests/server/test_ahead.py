"""Running ahead of the resolver (``proxy.service.ahead``), through a real proxy and a fake upstream.

The upstream's request log is the evidence of what running ahead fetched; ``/metrics`` says when
it has nothing more under way (``wheelmeld_ahead_running``), so no test sleeps for it to stop.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import MakeStack, Stack, wait_until, wheel
from tests.support.upstream import Fault, UpstreamOptions, UpstreamServer

ON = {"meld_run_ahead_depth": 2}


def _chain() -> FakeIndex:
    """root -> alpha, beta, gamma[fast]; alpha -> deep1 -> deep2 -> deep3; gamma[fast] -> fastdep.

    alpha 2.0's two wheels disagree (a meld); its 2.5 is yanked and its 3.0rc1 a pre-release; beta
    1.0 wants a Python nobody has; what only an unasked extra or no platform wants is never fetched.
    """
    projects = {
        "root": [
            wheel(
                "root-1.0-py3-none-any.whl",
                ["alpha", "beta", "gamma[fast]", "never; extra == 'x'", "nowhere; sys_platform == 'plan9'"],
            )
        ],
        "alpha": [
            wheel("alpha-1.0-py3-none-any.whl", ["deep1"]),
            wheel("alpha-2.0-cp311-cp311-manylinux_2_28_x86_64.whl", ["deep1", "linuxonly"]),
            wheel("alpha-2.0-cp311-cp311-win_amd64.whl", ["deep1"]),
            wheel("alpha-2.5-py3-none-any.whl", ["deep1"], yanked="broken"),
            wheel("alpha-3.0rc1-py3-none-any.whl", ["deep1"]),
        ],
        "beta": [
            wheel("beta-0.5-py3-none-any.whl"),
            wheel("beta-1.0-py3-none-any.whl", requires_python=">=3.99"),
        ],
        "gamma": [wheel("gamma-1.0-py3-none-any.whl", ["fastdep; extra == 'fast'"], extras=["fast"])],
        "deep1": [wheel("deep1-1.0-py3-none-any.whl", ["deep2"])],
        "deep2": [wheel("deep2-1.0-py3-none-any.whl", ["deep3"])],
        "deep3": [wheel("deep3-1.0-py3-none-any.whl")],
        "fastdep": [wheel("fastdep-1.0-py3-none-any.whl")],
        "linuxonly": [wheel("linuxonly-1.0-py3-none-any.whl")],
        "never": [wheel("never-1.0-py3-none-any.whl")],
        "nowhere": [wheel("nowhere-1.0-py3-none-any.whl")],
    }
    return FakeIndex({name: tuple(files) for name, files in projects.items()})


def _metrics(stack: Stack) -> dict[str, float]:
    found = {}
    for line in stack.client.get("/metrics").text.splitlines():
        if line.startswith("wheelmeld_ahead"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _settle(stack: Stack) -> None:
    wait_until(lambda: _metrics(stack)["wheelmeld_ahead_running"] == 0, "running ahead settles", 20.0)


def _pages(stack: Stack) -> set[str]:
    """Projects whose page the proxy asked upstream for."""
    return {r.path.rstrip("/").rsplit("/", 1)[-1] for r in stack.upstream.requests_for("/")}


def _files(stack: Stack) -> set[str]:
    """Files (wheels, metadata) the proxy asked upstream for."""
    return {r.path.rsplit("/", 1)[-1] for r in stack.upstream.requests_for("") if not r.path.endswith("/")}


def _ask_root(stack: Stack) -> None:
    assert stack.client.get(stack.page("root")).status_code == 200
    assert stack.client.get(stack.file("root", "root-1.0-py3-none-any.whl", ".metadata")).status_code == 200


def test_runs_ahead_to_its_depth_and_no_further(make_stack: MakeStack) -> None:
    stack = make_stack(_chain(), config=ON)
    _ask_root(stack)
    _settle(stack)
    # Depth 2: root's requirements, and theirs; deep2 is a third level, never asked by anyone.
    assert _pages(stack) == {"root", "alpha", "beta", "gamma", "deep1", "linuxonly", "fastdep"}
    files = _files(stack)
    assert {f for f in files if f.startswith("alpha")} >= {
        "alpha-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "alpha-2.0-cp311-cp311-win_amd64.whl",
    }
    assert not any(f.startswith(("alpha-1.0", "alpha-2.5", "alpha-3.0rc1", "beta-1.0")) for f in files)
    assert any(f.startswith("beta-0.5") for f in files)
    counted = _metrics(stack)
    assert counted['wheelmeld_ahead_total{outcome="started"}'] == 6
    assert counted["wheelmeld_ahead_unused_upstream_requests"] > 0


def test_off_by_route_or_depth_fetches_nothing_more(make_stack: MakeStack) -> None:
    for stack in (
        make_stack(_chain(), config={"meld_run_ahead_depth": 0}),
        make_stack(_chain(), config=ON, route={"run_ahead": False}),
    ):
        _ask_root(stack)
        assert _pages(stack) == {"root"}
        assert _metrics(stack)['wheelmeld_ahead_total{outcome="started"}'] == 0


def test_releases_per_trigger_are_bounded(make_stack: MakeStack) -> None:
    stack = make_stack(_chain(), config={**ON, "meld_run_ahead_releases": 2})
    _ask_root(stack)
    _settle(stack)
    assert len(_pages(stack) - {"root"}) == 2
    assert _metrics(stack)['wheelmeld_ahead_total{outcome="started"}'] == 2


def _wide(width: int, wheels: int) -> FakeIndex:
    """root requires p0..p{width-1}; each has ``wheels`` disagreeing wheels (each a meld)."""
    projects: dict[str, tuple[Any, ...]] = {
        "root": (wheel("root-1.0-py3-none-any.whl", [f"p{i}" for i in range(width)]),),
        "other": (
            wheel("other-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", ["x"]),
            wheel("other-1.0-cp311-cp311-win_amd64.whl", []),
        ),
    }
    tags = [f"cp3{10 + k}-cp3{10 + k}-manylinux_2_28_x86_64" for k in range(wheels)]
    for i in range(width):
        projects[f"p{i}"] = tuple(
            wheel(f"p{i}-1.0-{tag}.whl", [f"q{k}"] if k else []) for k, tag in enumerate(tags)
        )
    return FakeIndex(projects)


def test_upstream_requests_in_flight_never_exceed_the_budget(make_stack: MakeStack) -> None:
    stack = make_stack(_wide(6, 3), config={**ON, "meld_run_ahead_concurrency": 2}, latency_ms=40)
    _ask_root(stack)
    stack.upstream.log.reset()  # the client's own requests are answered: what follows runs ahead
    _settle(stack)
    assert len(_files(stack)) >= 6 * 3, "every p's wheels were read ahead"
    assert stack.upstream.log.most_in_flight() <= 2


def _stalled(stack: Stack) -> bool:
    return sum(r.status == 0 for r in stack.upstream.requests_for(".whl")) >= 2


def test_a_client_is_served_while_running_ahead_is_stuck(make_stack: MakeStack) -> None:
    # Upstream gates of 4 and a budget of 2: running ahead stalls in 2 sibling reads (two of each
    # p's wheels hang; unbounded, two melds would hold all 4), and the client's meld of ``other``
    # still has 2 slots for its own sibling.
    stack = make_stack(_wide(4, 3), config={**ON, "meld_run_ahead_concurrency": 2, "upstream_concurrency": 4})
    for i in range(4):
        for minor in (11, 12):  # not the first wheel, which a meld reads ahead of its siblings
            name = f"p{i}-1.0-cp3{minor}-cp3{minor}-manylinux_2_28_x86_64.whl"
            stack.upstream.inject_fault("/" + name, Fault(head_delay_ms=8000))
    _ask_root(stack)
    wait_until(lambda: _stalled(stack), "running ahead stalls")
    response = stack.client.get(stack.file("other", "other-1.0-cp311-cp311-win_amd64.whl", ".metadata"))
    assert response.status_code == 200
    assert "x" in response.text  # the meld: the Linux wheel's requirement, marked
    stalled = [
        r for r in stack.upstream.requests_for("_x86_64.whl") if "/p" in r.path and "cp310" not in r.path
    ]
    assert stalled and all(r.status == 0 for r in stalled), "answered while running ahead still waits"
    assert _metrics(stack)["wheelmeld_ahead_running"] > 0


def _p0_reads(stack: Stack) -> int:
    return sum(
        "/p0-" in r.path and r.path.endswith((".whl", ".metadata")) for r in stack.upstream.requests_for("")
    )


def test_a_meld_a_client_waits_for_reads_its_queued_siblings_at_once(make_stack: MakeStack) -> None:
    # A budget of 1: running ahead reads p0's six siblings one at a time. Once two have been sent
    # the others are queued at its gate; the client asking for p0 must not wait behind them.
    stack = make_stack(_wide(1, 6), config={**ON, "meld_run_ahead_concurrency": 1}, latency_ms=300)
    _ask_root(stack)
    wait_until(lambda: _p0_reads(stack) >= 2, "running ahead reads p0's siblings", 10.0)
    stack.upstream.log.reset()
    asked = stack.file("p0", "p0-1.0-cp310-cp310-manylinux_2_28_x86_64.whl", ".metadata")
    assert stack.client.get(asked).status_code == 200
    assert stack.upstream.log.most_in_flight() >= 3, "the queued sibling reads went at a client's speed"


def test_what_a_client_asks_later_counts_as_used(make_stack: MakeStack) -> None:
    stack = make_stack(_chain(), config=ON)
    _ask_root(stack)
    _settle(stack)
    before = len(stack.upstream.log)
    assert stack.client.get(stack.page("alpha")).status_code == 200
    win = stack.file("alpha", "alpha-2.0-cp311-cp311-win_amd64.whl", ".metadata")
    assert stack.client.get(win).status_code == 200
    assert stack.upstream.requests_for("")[before:] == (), "the page and the meld were warm"
    counted = _metrics(stack)
    assert counted['wheelmeld_ahead_total{outcome="used"}'] == 2  # alpha's page and its meld
    assert counted['wheelmeld_ahead_upstream_requests_total{outcome="used"}'] >= 3


# -- the property: the same client requests get the same answers, running ahead or not ------------

_REQUESTS = (
    ("root", None),
    ("root", "root-1.0-py3-none-any.whl"),
    ("alpha", None),
    ("alpha", "alpha-2.0-cp311-cp311-win_amd64.whl"),
    ("alpha", "alpha-2.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    ("alpha", "alpha-1.0-py3-none-any.whl"),
    ("beta", "beta-1.0-py3-none-any.whl"),
    ("deep1", None),
    ("deep1", "deep1-1.0-py3-none-any.whl"),
    ("gamma", "gamma-1.0-py3-none-any.whl"),
)


@pytest.fixture(scope="module")
def chain_upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(_chain(), UpstreamOptions(prefix="/simple")) as up:
        yield up


def _answers(stack: Stack, order: list[tuple[str, str | None]], settle: list[bool]) -> list[object]:
    out: list[object] = []
    for (project, filename), wait in zip(order, settle, strict=True):
        path = stack.page(project) if filename is None else stack.file(project, filename, ".metadata")
        for accept in ("application/vnd.pypi.simple.v1+json", "text/html"):
            response = stack.client.get(path, headers={"Accept": accept})
            headers = {k: v for k, v in response.headers.items() if k not in ("date", "server")}
            out.append((path, accept, response.status_code, headers, response.content))
        if wait:
            _settle(stack)
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(_REQUESTS), settle=st.lists(st.booleans(), min_size=10, max_size=10))
def test_running_ahead_never_changes_an_answer(
    chain_upstream: UpstreamServer, order: list[tuple[str, str | None]], settle: list[bool]
) -> None:
    assert_same_answers(chain_upstream, order, settle)


def assert_same_answers(up: UpstreamServer, order: list[tuple[str, str | None]], settle: list[bool]) -> None:
    """The requests ``order`` (each followed by running ahead settling, where ``settle`` says) get
    byte-identical answers from a fresh proxy running ahead and from one that does not."""
    answers = []
    for config in ({"meld_run_ahead_depth": 0}, ON):
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            running = _stack_on(stack, up, Path(tmp), config)
            answers.append(_answers(running, order, settle))
            _settle(running)  # nothing may write to the cache once it is gone
    for off, on in zip(*answers, strict=True):
        assert off == on


def _stack_on(stack: contextlib.ExitStack, up: UpstreamServer, cache: Path, config: dict[str, Any]) -> Stack:
    """A fresh proxy in front of an upstream already running (``start_stack`` starts its own)."""
    proxy = stack.enter_context(ProxyServer(proxy_config(cache, {"/simple": up.url + "/simple"}, **config)))
    client = stack.enter_context(httpx.Client(base_url=proxy.url, timeout=20.0))
    return Stack(up, proxy, client, cache)
