"""What running ahead guesses a resolver asks for next (``proxy.service.ahead_choice``): tables."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from proxy.index.model import DistFile
from proxy.index.releases import release_groups
from proxy.service.ahead_choice import (
    Wanted,
    covered_pythons,
    likely_release,
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


@pytest.mark.parametrize(
    ("files", "specifier", "chosen"),
    [
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"], "", "2.0"),
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"], "<2", "1.0"),
        (["p-1.0-py3-none-any.whl", "p-3.0rc1-py3-none-any.whl"], "", "1.0"),  # no pre-release unasked
        (["p-1.0-py3-none-any.whl", "p-3.0rc1-py3-none-any.whl"], ">=3.0rc1", "3.0rc1"),
        (["p-3.0.dev1-py3-none-any.whl"], "", "3.0.dev1"),  # nothing else: pre-releases it is
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl!yanked"], "", "1.0"),
        (["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl!py>=3.99"], "", "1.0"),
        (["p-1.0-py3-none-any.whl", "p-2.0.tar.gz"], "", None),  # the newest has no wheel: no meld
        (["p-1.0-py3-none-any.whl"], ">=2", None),
    ],
)
def test_likely_release(files: list[str], specifier: str, chosen: str | None) -> None:
    dists = []
    for spec in files:
        name, _, flag = spec.partition("!")
        dists.append(
            _dist(name, requires_python=">=3.99" if flag == "py>=3.99" else None, yanked=flag == "yanked")
        )
    wanted = Wanted("p", SpecifierSet(specifier), frozenset())  # type: ignore[arg-type]
    release = likely_release(dists, release_groups(dists), wanted, frozenset({(3, 11)}))
    version = None if release is None else release.wheels[0].filename.split("-")[1]
    assert version == chosen


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
