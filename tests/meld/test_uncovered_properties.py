"""Environments no wheel covers, as properties over generated releases (issue 13).

Generated releases leave platforms and Pythons without a wheel (at most seven wheels over thirteen
platform tags and nine interpreter tags), and come with no sdist, an sdist whose ``Requires-Dist``
is static, one whose is dynamic, one whose metadata could not be had, or no word on the sdist.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.utils import parse_wheel_filename

from proxy.meld import NO_SDIST, NoSdist, SdistInput, Uncovered, WheelInput, meld_release
from tests.meld.meldkit import (
    ALL_ENVIRONMENTS,
    build_metadata,
    build_sdist_metadata,
    check_contract,
    check_uncovered,
    preferred,
    provided_extras,
)
from tests.meld.test_properties import POOL, Release, releases

SDIST = "demo-1.0.tar.gz"
AARCH64_ONLY = 'xdep==9.9; platform_system == "Linux" and platform_machine == "aarch64"'
KINDS = ("unknown", "none", "static", "dynamic", "unavailable")
QUICK = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class WithSdist:
    release: Release
    kind: str
    sdist: SdistInput | NoSdist | None
    static: bytes | None  # the sdist's metadata when its Requires-Dist is static


@st.composite
def with_sdists(draw: st.DrawFn, max_stories: int = 3) -> WithSdist:
    release = draw(releases(max_stories=max_stories))
    kind = draw(st.sampled_from(KINDS))
    story = sorted(draw(st.sets(st.integers(0, len(POOL) - 1), max_size=7)))
    texts = [draw(st.sampled_from(POOL[i][0])) for i in story]
    extras = sorted({extra for i in story for extra in POOL[i][1]})
    metadata = build_sdist_metadata("demo", "1.0", texts, extras, dynamic=kind == "dynamic")
    sdist: SdistInput | NoSdist | None = {
        "unknown": None,
        "none": NO_SDIST,
        "static": SdistInput(SDIST, metadata),
        "dynamic": SdistInput(SDIST, metadata),
        "unavailable": SdistInput(SDIST, None),
    }[kind]
    return WithSdist(release, kind, sdist, metadata if kind == "static" else None)


@settings(QUICK)
@given(with_sdists())
def test_faithful_where_wheels_are_and_the_sdists_where_none_is(case: WithSdist) -> None:
    """ "Never worse than no proxy": wherever an installer picks a wheel, R* says what that wheel says;
    where none is, R* says what a static sdist says."""
    result = meld_release(case.release.wheels, case.sdist)
    if not result.report.disagreed:
        return  # upstream's bytes (test_transparency_whatever_the_sdist)
    extras = provided_extras(case.static) if case.static is not None else set()
    check_contract(case.release.wheels, result.outputs, extras)
    check_uncovered(case.release.wheels, case.static, result.outputs)


@settings(QUICK)
@given(with_sdists(max_stories=1))
def test_transparency_whatever_the_sdist(case: WithSdist) -> None:
    result = meld_release(case.release.wheels, case.sdist)
    for wheel in case.release.wheels:
        assert result.outputs[wheel.filename] is wheel.metadata, f"{wheel.filename} was rewritten"
    assert result.report.complete is (case.kind != "unavailable")


@settings(QUICK)
@given(with_sdists())
def test_the_report_says_how_uncovered_environments_were_decided(case: WithSdist) -> None:
    result = meld_release(case.release.wheels, case.sdist)
    report = result.report
    expected = {
        "unknown": Uncovered.FREE,
        "none": Uncovered.NOTHING,
        "static": Uncovered.SDIST,
        "dynamic": Uncovered.DYNAMIC,
        "unavailable": Uncovered.UNAVAILABLE,
    }[case.kind]
    assert report.uncovered is expected
    assert report.complete is (case.kind != "unavailable")
    assert report.to_dict()["uncovered"] == expected.value
    if report.disagreed and expected in (Uncovered.DYNAMIC, Uncovered.UNAVAILABLE):
        names = [w.filename for w in case.release.wheels]
        arm = [env for env in ALL_ENVIRONMENTS if (env.sys_platform, env.machine) == ("linux", "aarch64")]
        missing = [env for env in arm if preferred(names, env) is None]
        if missing:
            assert any(line.startswith("linux aarch64") for line in report.left_to_sdist), missing[0]
        if _without_linux_aarch64(case.release):
            assert "linux aarch64" in report.left_to_sdist  # the whole platform, no "where"
    else:
        assert not report.left_to_sdist
    if expected is not Uncovered.NOTHING:
        assert not report.dropped


def _without_linux_aarch64(release: Release) -> bool:
    return not any(
        tag.platform == "any" or "aarch64" in tag.platform
        for wheel in release.wheels
        for tag in parse_wheel_filename(wheel.filename)[3]
    )


@st.composite
def aarch64_lines(draw: st.DrawFn) -> tuple[Release, tuple[WheelInput, ...]]:
    """A release without a Linux aarch64 wheel; some of its wheels declare a line only for it."""
    release = draw(releases().filter(_without_linux_aarch64))
    chosen = draw(st.lists(st.booleans(), min_size=len(release.wheels), max_size=len(release.wheels)))
    wheels = []
    for wheel, add in zip(release.wheels, chosen, strict=True):
        assert wheel.metadata is not None
        if add:
            head, sep, body = wheel.metadata.partition(
                b"\n\n" if b"\r\n" not in wheel.metadata else b"\r\n\r\n"
            )
            eol = b"\r\n" if b"\r\n" in head else b"\n"
            wheel = WheelInput(
                wheel.filename, head + eol + f"Requires-Dist: {AARCH64_ONLY}".encode() + sep + body
            )
        wheels.append(wheel)
    return release, tuple(wheels)


@settings(QUICK)
@given(aarch64_lines())
def test_without_sdist_a_line_only_for_an_uncovered_platform_goes(
    case: tuple[Release, tuple[WheelInput, ...]],
) -> None:
    _, wheels = case
    result = meld_release(wheels, NO_SDIST)
    unknown = meld_release(wheels)
    if not result.report.disagreed:
        return  # agreeing wheels: upstream's bytes
    check_contract(wheels, result.outputs)
    declared = any(AARCH64_ONLY.encode() in (w.metadata or b"") for w in wheels)
    for wheel in wheels:
        assert AARCH64_ONLY.encode() not in result.outputs[wheel.filename]
        assert (AARCH64_ONLY.encode() in unknown.outputs[wheel.filename]) is declared
    # Other lines may go too: a release without Windows wheels drops its pywin32 line.
    assert (AARCH64_ONLY in result.report.dropped) is declared


def test_build_metadata_is_what_the_pool_expects() -> None:
    assert build_metadata("demo", "1.0", []).startswith(b"Metadata-Version: 2.1\n")
