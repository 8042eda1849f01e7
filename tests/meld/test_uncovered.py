"""Environments no wheel covers (issue 13): the sdist's, or nobody's — tables for the two real classes.

Class 1: a requirement that can only apply where the release has no wheel (and no sdist) made a
universal lock fail through the proxy. Class 2: environments only the sdist serves got the wheels'
"no" instead of the sdist's "yes".
"""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from proxy.meld import NO_SDIST, NoSdist, SdistInput, Uncovered, WheelInput, meld_release
from tests.meld.meldkit import (
    Environment,
    active,
    build_metadata,
    build_sdist_metadata,
    check_contract,
    check_uncovered,
    requirements_of,
)

SDIST = "demo-1.0.tar.gz"


def _wheel(tags: str, requires: list[str]) -> WheelInput:
    return WheelInput(f"demo-1.0-{tags}.whl", build_metadata("demo", "1.0", requires))


def _served(result_outputs: dict[str, bytes] | object, wheels: list[WheelInput]) -> list[Requirement]:
    assert isinstance(result_outputs, dict) or hasattr(result_outputs, "__getitem__")
    return requirements_of(result_outputs[wheels[0].filename])  # type: ignore[index]


# --- class 1: a requirement only for a platform the release has no wheel for ---------------------

AARCH64_ONLY = 'xdep==9.9; platform_system == "Linux" and platform_machine == "aarch64"'
CLASS_1 = [
    _wheel("cp311-cp311-manylinux_2_17_x86_64", ["numpy", AARCH64_ONLY]),
    _wheel("cp311-cp311-win_amd64", ["numpy", AARCH64_ONLY]),
    _wheel("cp311-cp311-macosx_11_0_arm64", ["numpy"]),
    _wheel("cp311-cp311-macosx_10_9_x86_64", ["numpy"]),
]


@pytest.mark.parametrize(
    ("sdist", "kept", "uncovered"),
    [
        # No sdist: nothing installs on Linux aarch64, the line can only make a universal lock fail.
        (NO_SDIST, False, Uncovered.NOTHING),
        # The caller does not know: uncovered environments stay free (the line keeps its marker).
        (None, True, Uncovered.FREE),
        # A static sdist that declares it: installers on Linux aarch64 build the sdist and need it.
        (
            SdistInput(SDIST, build_sdist_metadata("demo", "1.0", ["numpy", AARCH64_ONLY])),
            True,
            Uncovered.SDIST,
        ),
        # A static sdist that does not: nobody there asks for it.
        (SdistInput(SDIST, build_sdist_metadata("demo", "1.0", ["numpy"])), False, Uncovered.SDIST),
        # Dynamic or unavailable sdist metadata: left to the sdist, the line stays.
        (SdistInput(SDIST, build_sdist_metadata("demo", "1.0", [], dynamic=True)), True, Uncovered.DYNAMIC),
        (SdistInput(SDIST, None), True, Uncovered.UNAVAILABLE),
    ],
    ids=["no-sdist", "unknown", "static-declares", "static-lacks", "dynamic", "unavailable"],
)
def test_class_1_a_line_only_for_an_uncovered_platform(
    sdist: SdistInput | NoSdist | None, kept: bool, uncovered: Uncovered
) -> None:
    result = meld_release(CLASS_1, sdist)
    report = result.report
    assert report.uncovered is uncovered
    check_contract(CLASS_1, result.outputs)
    for wheel in CLASS_1:
        assert (AARCH64_ONLY.encode() in result.outputs[wheel.filename]) is kept, wheel.filename
    assert report.dropped == (() if kept or uncovered is not Uncovered.NOTHING else (AARCH64_ONLY,))
    if isinstance(sdist, SdistInput) and uncovered is Uncovered.SDIST:
        assert sdist.metadata is not None
        check_uncovered(CLASS_1, sdist.metadata, result.outputs)
    if uncovered in (Uncovered.DYNAMIC, Uncovered.UNAVAILABLE):
        assert "linux aarch64" in report.left_to_sdist
    assert report.complete is (uncovered is not Uncovered.UNAVAILABLE)


# --- class 2: environments only the sdist serves -----------------------------------------------

SIX_WHEELS = [
    *(
        _wheel(f"{py}-{platform}", ["numpy", "six"])
        for py in ("cp36-cp36m", "cp37-cp37m", "cp38-cp38", "cp39-cp39")
        for platform in ("manylinux_2_17_x86_64", "macosx_10_9_x86_64", "win_amd64")
    ),
    *(
        _wheel(f"{py}-macosx_11_0_arm64", ["numpy"])
        for py in ("cp36-cp36m", "cp37-cp37m", "cp38-cp38", "cp39-cp39", "cp310-cp310")
    ),
    _wheel("cp39-cp39-macosx_10_9_universal2", ["numpy"]),
    *(
        _wheel(f"cp310-cp310-{platform}", ["numpy"])
        for platform in ("manylinux_2_17_x86_64", "macosx_10_9_x86_64", "win_amd64")
    ),
]
SIX_SDIST = SdistInput(SDIST, build_sdist_metadata("demo", "1.0", ["numpy", 'six; python_version < "3.10"']))
SIX = ("six", frozenset(), Requirement("six").specifier, None)


@pytest.mark.parametrize(
    ("environment", "six"),
    [
        # The failure of issue 13: Linux aarch64 has no wheel; installers build the sdist, which needs six.
        (Environment("linux", "aarch64", (3, 9), "cpython"), True),
        (Environment("linux", "aarch64", (3, 10), "cpython"), False),
        (Environment("linux", "aarch64", (3, 12), "cpython"), False),
        (Environment("linux", "x86_64", (3, 9), "cpython"), True),
        (Environment("linux", "x86_64", (3, 10), "cpython"), False),
        (Environment("win32", "AMD64", (3, 8), "cpython"), True),
        (Environment("win32", "ARM64", (3, 8), "cpython"), True),  # no wheel: the sdist's
        (Environment("darwin", "x86_64", (3, 9), "cpython"), True),
        (Environment("darwin", "arm64", (3, 9), "cpython"), False),
        (Environment("darwin", "arm64", (3, 9), "pypy"), True),  # no wheel: the sdist's
        (Environment("darwin", "arm64", (3, 10), "cpython"), False),
    ],
)
def test_class_2_environments_only_the_sdist_serves(environment: Environment, six: bool) -> None:
    result = meld_release(SIX_WHEELS, SIX_SDIST)
    served = requirements_of(result.outputs[SIX_WHEELS[0].filename])
    assert (SIX in active(served, environment, ())) is six


def test_class_2_is_faithful_everywhere() -> None:
    result = meld_release(SIX_WHEELS, SIX_SDIST)
    assert result.report.uncovered is Uncovered.SDIST and result.report.complete
    check_contract(SIX_WHEELS, result.outputs)
    assert SIX_SDIST.metadata is not None
    assert check_uncovered(SIX_WHEELS, SIX_SDIST.metadata, result.outputs)


def test_class_2_without_sdist_knowledge_keeps_todays_answer() -> None:
    """``sdist=None``: Linux aarch64 is free for the search (the lock may give it no six)."""
    result = meld_release(SIX_WHEELS)
    assert result.report.uncovered is Uncovered.FREE and not result.report.left_to_sdist
    check_contract(SIX_WHEELS, result.outputs)


SHORT_SIX = 'six; platform_machine != "arm64" and python_version < "3.10"'


@pytest.mark.parametrize("sdist", [None, NO_SDIST, SIX_SDIST], ids=["unknown", "no-sdist", "static"])
def test_class_2_marker_is_two_comparisons(sdist: SdistInput | NoSdist | None) -> None:
    """The wheels allow two comparisons; the old search wrote three (``(AMD64 or x86_64) and < 3.10``).

    With the static sdist a second line serves what only the sdist says: PyPy on macOS arm64 and
    other systems reporting ``arm64`` have no wheel and build the sdist, which asks for six there.
    """
    result = meld_release(SIX_WHEELS, sdist)
    six = [str(r) for r in requirements_of(result.outputs[SIX_WHEELS[0].filename]) if r.name == "six"]
    assert six[0] == SHORT_SIX
    if sdist is SIX_SDIST:
        assert len(six) == 2 and six[1].startswith('six; python_version < "3.10" and ')
    else:
        assert six == [SHORT_SIX]
