"""What running ahead guesses a resolver asks for next (``proxy.service.ahead_choice``): tables."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from proxy.index.model import DistFile
from proxy.index.releases import release_groups
from proxy.service.ahead_choice import (
    Wanted,
    covered_pythons,
    likely_releases,
    metadata_requirements,
    wanted_requirements,
)

ALL = frozenset((3, m) for m in range(6, 16))


def _dist(filename: str, requires_python: str | None = None, yanked: bool = False) -> DistFile:
    return DistFile(filename, f"http://upstream.example/{filename}", {}, requires_python, yanked, False)


def _metadata(*requires: str, requires_python: str | None = None) -> bytes:
    lines = ["Metadata-Version: 2.1", "Name: root", "Version: 1.0"]
    lines += [f"Requires-Python: {requires_python}"] if requires_python else []
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n\n").encode()


@pytest.mark.parametrize(
    ("requires", "extras", "pythons", "wanted"),
    [
        (["a", "b>=2"], frozenset(), ALL, ["a", "b>=2"]),
        (["a; extra == 'x'", "b"], frozenset(), ALL, ["b"]),  # an extra nobody asked for
        (["a; extra == 'x'", "b"], frozenset({"x"}), ALL, ["a", "b"]),
        (["a; sys_platform == 'win32'", "b; sys_platform == 'plan9'"], frozenset(), ALL, ["a"]),
        (["a; python_version < '3.8'"], frozenset(), frozenset({(3, 11), (3, 12)}), []),
        (["a; python_version < '3.8'"], frozenset(), frozenset({(3, 7)}), ["a"]),
        (["a @ https://upstream.example/a.whl"], frozenset(), ALL, []),  # a URL: no index's to warm
        (["A_B", "a-b"], frozenset(), ALL, ["a-b"]),  # one project, one specifier: once
    ],
)
def test_wanted_requirements(
    requires: list[str], extras: frozenset[str], pythons: frozenset[tuple[int, int]], wanted: list[str]
) -> None:
    _python, requirements = metadata_requirements(_metadata(*requires))
    got = wanted_requirements(requirements, extras, pythons)
    assert [f"{w.name}{w.specifier}" for w in got] == wanted


def test_requires_python_is_read() -> None:
    assert metadata_requirements(_metadata(requires_python=">=3.9"))[0] == ">=3.9"


PY311_UP = frozenset({(3, 11), (3, 12), (3, 13)})  # a parent whose Requires-Python is >=3.11


@pytest.mark.parametrize(
    ("files", "specifier", "pythons", "chosen"),
    [
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"], "", PY311_UP, ["2.0"]),
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"], "<2", PY311_UP, ["1.0"]),
        (["p-1.0-py3-none-any.whl", "p-3.0rc1-py3-none-any.whl"], "", PY311_UP, ["1.0"]),  # no pre unasked
        (["p-1.0-py3-none-any.whl", "p-3.0rc1-py3-none-any.whl"], ">=3.0rc1", PY311_UP, ["3.0rc1"]),
        (["p-3.0.dev1-py3-none-any.whl"], "", PY311_UP, ["3.0.dev1"]),  # nothing else: pre-releases it is
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl!yanked"], "", PY311_UP, ["1.0"]),
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl!>=3.99"], "", PY311_UP, ["1.0"]),
        (["p-1.0-py3-none-any.whl", "p-2.0.tar.gz"], "", PY311_UP, []),  # the newest has no wheel: no meld
        (["p-1.0-py3-none-any.whl"], ">=2", PY311_UP, []),
        (["p-1.0-py3-none-any.whl", "p-1.1-py3-none-any.whl"], "==1.0", PY311_UP, ["1.0"]),  # pinned
        # The newest wants 3.12, the parent admits 3.11: the resolver forks, and asks for the newest
        # admitting 3.11 too; one such version, never more (not 1.0, nor the 3.13 fork's 1.5).
        (
            [
                "p-1.0-py3-none-any.whl",
                "p-2.0-py3-none-any.whl!>=3.11",
                "p-2.1-py3-none-any.whl!>=3.11",
                "p-1.5-py3-none-any.whl!>=3.13",
                "p-3.0-py3-none-any.whl!>=3.12",
            ],
            "",
            PY311_UP,
            ["3.0", "2.1"],
        ),
        (
            ["p-2.0-py3-none-any.whl!>=3.11", "p-3.0-py3-none-any.whl!>=3.12"],
            "",
            PY311_UP - {(3, 11)},
            ["3.0"],
        ),
        (["p-2.0-py3-none-any.whl!>=3.11", "p-3.0-py3-none-any.whl!>=3.12"], ">=3", PY311_UP, ["3.0"]),
        (
            ["p-2.0-py3-none-any.whl!>=3.11", "p-2.0.tar.gz", "p-3.0-py3-none-any.whl!>=3.12"],
            "",
            PY311_UP,
            ["3.0", "2.0"],
        ),
        (["p-2.0.tar.gz!>=3.11", "p-3.0-py3-none-any.whl!>=3.12"], "", PY311_UP, ["3.0"]),  # 2.0: no wheel
    ],
)
def test_likely_releases(
    files: list[str], specifier: str, pythons: frozenset[tuple[int, int]], chosen: list[str]
) -> None:
    dists = []
    for spec in files:
        name, _, flag = spec.partition("!")
        dists.append(
            _dist(name, requires_python=flag if flag.startswith(">=") else None, yanked=flag == "yanked")
        )
    wanted = Wanted("p", SpecifierSet(specifier), frozenset())  # type: ignore[arg-type]
    releases = likely_releases(dists, release_groups(dists), wanted, pythons)
    assert [release.wheels[0].filename.split("-")[1] for release in releases] == chosen


@pytest.mark.parametrize(
    ("wheels", "requires_python", "within", "pythons"),
    [
        (["p-1.0-cp311-cp311-linux_x86_64.whl", "p-1.0-cp312-cp312-linux_x86_64.whl"], None, None, {11, 12}),
        (["p-1.0-py3-none-any.whl"], ">=3.13", None, {13, 14, 15}),
        (["p-1.0-cp310-abi3-linux_x86_64.whl"], "<3.12", None, {10, 11}),
        (["p-1.0-py3-none-any.whl"], None, frozenset({(3, 11)}), {11}),
    ],
)
def test_covered_pythons(
    wheels: list[str],
    requires_python: str | None,
    within: frozenset[tuple[int, int]] | None,
    pythons: set[int],
) -> None:
    dists = [_dist(w) for w in wheels]
    release = release_groups(dists)[wheels[0]]
    assert covered_pythons(release, requires_python, within) == {(3, m) for m in pythons}


@pytest.mark.parametrize(
    ("specifier", "pinned"),
    [
        ("==1.2.3", True),
        ("===1.2.3", True),
        ("==1.*", False),
        (">=1,<2", False),
        ("", False),
        ("~=1.2", False),
    ],
)
def test_a_pin_admits_one_version(specifier: str, pinned: bool) -> None:
    assert Wanted("p", SpecifierSet(specifier), frozenset()).pinned is pinned  # type: ignore[arg-type]
