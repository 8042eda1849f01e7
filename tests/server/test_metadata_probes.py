"""Probes for PEP 658 files no page advertised: sent where they pay, learned per project and route.

The upstream's request log is the evidence: which ``.metadata`` paths the proxy asked for, and
whether it read the wheel as well.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import MakeStack, Stack, wheel
from tests.support.upstream import Fault


def _without_pep658(files: list[FakeFile]) -> list[FakeFile]:
    return [replace(f, metadata=None) for f in files]


def _ask(stack: Stack, project: str, filename: str) -> None:
    response = stack.client.get(stack.file(project, filename, ".metadata"))
    assert response.status_code == 200, response.text


def _probed(stack: Stack, project: str) -> list[str]:
    return [p.rsplit("/", 1)[1] for _m, p, _r in stack.requests(".metadata") if f"/{project}/" in p]


def _solo(project: str, version: str) -> str:
    return f"{project}-{version}-py3-none-any.whl"


def test_a_project_whose_files_exist_is_probed_alone_however_many_others_miss(
    make_stack: MakeStack,
) -> None:
    # ``good`` answered its probe; then eight projects missed theirs. ``good``'s next release is
    # read from its PEP 658 file alone (no range read raced beside a probe known to pay), and the
    # route, which answered once, still probes a project it knows nothing of (``late``).
    misses = {f"miss{i}": _without_pep658([wheel(_solo(f"miss{i}", "1.0"))]) for i in range(8)}
    good = [wheel(_solo("good", "1.0")), wheel(_solo("good", "2.0"))]
    index = FakeIndex.from_files({"good": good, **misses, "late": [wheel(_solo("late", "1.0"))]})
    stack = make_stack(index, pep658=True, advertise_pep658=False, ranges=True, latency_ms=20)
    _ask(stack, "good", _solo("good", "1.0"))
    for project in misses:
        _ask(stack, project, _solo(project, "1.0"))
    _ask(stack, "good", _solo("good", "2.0"))
    _ask(stack, "late", _solo("late", "1.0"))
    assert _probed(stack, "good") == [_solo("good", v) + ".metadata" for v in ("1.0", "2.0")]
    assert not stack.upstream.requests_for("/" + _solo("good", "2.0")), "no range read beside the probe"
    assert _probed(stack, "late") == [_solo("late", "1.0") + ".metadata"]


def test_a_release_of_a_project_known_to_have_the_files_is_read_from_them_alone(
    make_stack: MakeStack,
) -> None:
    # The asked wheel's probe goes first and alone (the project answered before), then its
    # siblings' probes: not one wheel of the release is read with ranges.
    platforms = ("manylinux_2_17_x86_64", "win_amd64", "macosx_11_0_arm64")
    names = [f"multi-2.0-cp311-cp311-{plat}.whl" for plat in platforms]
    files = [wheel(_solo("multi", "1.0"))] + [
        wheel(n, ["numpy", "nvidia-thing"] if "linux" in n else ["numpy"]) for n in names
    ]
    index = FakeIndex.from_files({"multi": files})
    # 20 ms per request: a range read raced beside a probe surely reaches the upstream meanwhile.
    stack = make_stack(index, pep658=True, advertise_pep658=False, latency_ms=20)
    _ask(stack, "multi", _solo("multi", "1.0"))
    _ask(stack, "multi", names[1])
    expected = [_solo("multi", "1.0"), *names]
    assert sorted(_probed(stack, "multi")) == sorted(n + ".metadata" for n in expected)
    for name in names:
        assert not stack.upstream.requests_for("/" + name), name


def test_a_project_whose_newest_release_lacks_the_files_keeps_probing_the_others(
    make_stack: MakeStack,
) -> None:
    # On the live index PEP 658 files go by release (grpcio's newest: none of 60 wheels; an older
    # one: all): uv asks for the newest release first, and its 404 must not send the older
    # releases, which have the files, to range reads (one to three requests each, not one).
    files = [wheel(_solo("most", v)) for v in ("1.0", "2.0", "3.0", "4.0")]
    files[-1] = replace(files[-1], metadata=None)
    stack = make_stack(FakeIndex.from_files({"most": files}), pep658=True, advertise_pep658=False)
    for file in reversed(files):
        _ask(stack, "most", file.filename)
    assert _probed(stack, "most") == [f.filename + ".metadata" for f in reversed(files)]
    for file in files[:2]:
        assert len(stack.upstream.requests_for("/" + file.filename)) <= 1, "at most a read raced beside"


def _release(project: str, platforms: tuple[str, ...]) -> list[FakeFile]:
    return _without_pep658([wheel(f"{project}-1.0-cp311-cp311-{plat}.whl") for plat in platforms])


_PLATFORMS = ("manylinux_2_17_x86_64", "win_amd64", "macosx_11_0_arm64")


def test_on_a_route_that_only_missed_probes_siblings_are_read_beside_the_asked_wheel(
    make_stack: MakeStack,
) -> None:
    # The route missed one probe and answered none (the PyTorch index): a meld's siblings are read
    # while the asked wheel's probe is still out, not a round trip after its 404. The probe's
    # answer is held until a sibling's read arrives: waiting for it first would hold it 10 s and
    # leave ``held`` unset.
    files = _release("multi", _PLATFORMS)
    index = FakeIndex.from_files({"first": _without_pep658([wheel(_solo("first", "1.0"))]), "multi": files})
    stack = make_stack(index, pep658=True, advertise_pep658=False)
    _ask(stack, "first", _solo("first", "1.0"))
    held = threading.Event()
    asked, sibling = files[0].filename, files[1].filename
    stack.upstream.inject_fault(asked + ".metadata", Fault(hold_until="/" + sibling, held=held))
    _ask(stack, "multi", asked)
    assert held.is_set(), "the siblings waited for the asked wheel's probe"
    assert _probed(stack, "multi") == [asked + ".metadata"], "siblings are not probed on such a route"


def test_a_route_that_answered_a_probe_reads_the_asked_wheel_first(make_stack: MakeStack) -> None:
    # Once the route answered, the asked wheel's probe decides for its siblings again: they are
    # asked for only after it (their probes answer; no sibling is read with ranges).
    files = [wheel(f"multi-1.0-cp311-cp311-{plat}.whl") for plat in _PLATFORMS]
    index = FakeIndex.from_files({"first": [wheel(_solo("first", "1.0"))], "multi": files})
    stack = make_stack(index, pep658=True, advertise_pep658=False)
    _ask(stack, "first", _solo("first", "1.0"))
    held = threading.Event()
    asked, sibling = files[0].filename, files[1].filename
    stack.upstream.inject_fault(
        asked + ".metadata", Fault(hold_until="/" + sibling + ".metadata", hold_seconds=0.5, held=held)
    )
    _ask(stack, "multi", asked)
    assert not held.is_set()
    assert sorted(_probed(stack, "multi")) == sorted(f.filename + ".metadata" for f in files)
    for f in files[1:]:
        assert not stack.upstream.requests_for("/" + f.filename), f.filename
