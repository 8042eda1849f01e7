"""Honest limits (contract item 6): overlaps markers cannot split follow installer tag priority."""

from __future__ import annotations

import pytest

from proxy.meld import WheelInput, meld_release
from tests.meld.meldkit import build_metadata, check_contract, requirements_of


def _wheel(tags: str, requires: list[str]) -> WheelInput:
    return WheelInput(f"demo-1.0-{tags}.whl", build_metadata("demo", "1.0", requires))


@pytest.mark.parametrize(
    ("preferred", "other"),
    [
        ("cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"),
        ("cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-musllinux_1_2_x86_64"),
        ("cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-linux_x86_64"),
        ("cp311-cp311-win_amd64", "py3-none-any"),
        ("cp311-cp311-win_amd64", "cp39-abi3-win_amd64"),
        ("cp311-abi3-win_amd64", "cp311-none-win_amd64"),
        ("cp313-cp313-win_amd64", "cp313-cp313t-win_amd64"),
        ("cp312-cp312-macosx_11_0_arm64", "cp312-cp312-macosx_10_9_universal2"),
        ("cp312-cp312-macosx_14_0_arm64", "cp312-cp312-macosx_11_0_arm64"),
    ],
)
def test_overlap_goes_to_the_installers_pick(preferred: str, other: str) -> None:
    # Listed in both orders: the pick must not depend on input order.
    for wheels in (
        [_wheel(preferred, ["numpy"]), _wheel(other, ["numpy", "scipy"])],
        [_wheel(other, ["numpy", "scipy"]), _wheel(preferred, ["numpy"])],
    ):
        result = meld_release(wheels)
        winner = next(w for w in wheels if preferred in w.filename)
        loser = next(w for w in wheels if other in w.filename)
        (conflict,) = [line for line in result.report.conflicts if "markers cannot tell apart" in line]
        assert conflict.startswith(f"{loser.filename} disagrees with {winner.filename}")
        # Where both install, the installer's pick decides: R* there is the winner's own list.
        assert "scipy" not in {
            r.name for r in requirements_of(result.outputs[winner.filename]) if r.marker is None
        }
        check_contract(wheels, result.outputs)


def test_fully_shadowed_declaration_is_dropped_and_reported() -> None:
    wheels = [
        _wheel("cp311-cp311-manylinux_2_28_x86_64", ["numpy"]),
        _wheel("cp311-cp311-manylinux_2_28_x86_64.linux_x86_64", ["numpy", "scipy"]),
    ]
    result = meld_release(wheels)
    assert any("dropped" in line for line in result.report.conflicts)
    served = {str(r) for r in requirements_of(result.outputs[wheels[1].filename])}
    assert served == {"numpy"}


def test_pure_wheel_beside_platform_wheels_is_limited_to_the_rest() -> None:
    wheels = [
        _wheel("cp311-cp311-manylinux_2_17_x86_64", ["numpy", "cuda-runtime"]),
        _wheel("py3-none-any", ["numpy"]),
    ]
    result = meld_release(wheels)
    (item,) = result.report.added
    assert item.requirement == "cuda-runtime"
    # The pure wheel is picked on every other platform, every other Python and every other implementation.
    assert item.marker is not None and "x86_64" in item.marker and "3.11" in item.marker
    check_contract(wheels, result.outputs)
