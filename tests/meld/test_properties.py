"""The meld contract as properties over generated releases (hypothesis).

Releases mix the tag families of docs/meld-contract.md and up to three "stories" (requirement lists) over
the wheels, spelled in equivalent ways (legacy ``(>=x)``, ``_``/``-``, quoting) so textual noise and
real disagreement both occur. The seed's shape — x86_64 wheels with CUDA lines, aarch64 and Windows
wheels without — is one of the things the generator produces (see ``test_generator_reaches_the_seed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from packaging.markers import Marker
from packaging.metadata import parse_email
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from proxy.meld import WheelInput, meld_release
from tests.meld.meldkit import build_metadata, check_contract, environments_of, requirements_of

PYTHONS = (
    "cp39-cp39",
    "cp310-cp310",
    "cp310-none",
    "cp311-cp311",
    "cp312-cp312",
    "cp313-cp313",
    "cp313-cp313t",
    "cp39-abi3",
    "pp310-pypy310_pp73",
)
PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "manylinux_2_28_aarch64",
    "musllinux_1_2_x86_64",
    "linux_aarch64",
    "linux_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_x86_64",
    "macosx_10_9_universal2",
    "win_amd64",
    "win_arm64",
    "win32",
)

# Each requirement in equivalent spellings; the extras it is under; whether its marker reads only
# platform variables (so "could this wheel ever use it" is decidable from the platform tag alone).
POOL: tuple[tuple[tuple[str, ...], tuple[str, ...], bool], ...] = (
    (("numpy>=1.20", "numpy (>=1.20)", "NumPy >= 1.20"), (), False),
    (("typing_extensions>=4", "Typing-Extensions (>=4)"), (), False),
    (("filelock",), (), False),
    (("lxml_html_clean", "lxml-html-clean"), (), False),
    (
        (
            "nvidia-cublas-cu12==12.1.3.1; platform_system == 'Linux' and platform_machine == 'x86_64'",
            'nvidia-cublas-cu12 (==12.1.3.1) ; platform_system == "Linux" and platform_machine == "x86_64"',
        ),
        (),
        True,
    ),
    (('triton==2.1.0; platform_system == "Linux" and platform_machine == "x86_64"',), (), True),
    (("pywin32>=300; sys_platform == 'win32'",), (), True),
    (("colorama; platform_system == 'Windows'",), (), True),
    (("appnope; sys_platform == 'darwin'",), (), True),
    (("tomli>=1; python_version < '3.11'",), (), False),
    (("setuptools; python_version >= '3.12'",), (), False),
    (("uvloop; sys_platform != 'win32' and implementation_name == 'cpython'",), (), False),
    (("cffi>=1.0; implementation_name == 'pypy'",), (), False),
    (("jinja2; extra == 'dynamo'", 'jinja2 ; extra == "dynamo"'), ("dynamo",), False),
    (
        ("opt-einsum>=3.3; extra == 'opt-einsum'", "opt_einsum (>=3.3) ; extra == 'opt-einsum'"),
        ("opt-einsum",),
        False,
    ),
    (("cupy[all]>=12; extra == 'cuda' and platform_machine == 'x86_64'",), ("cuda",), False),
    (("exceptiongroup; python_full_version < '3.11.2'",), (), False),
)


@dataclass(frozen=True)
class Release:
    wheels: tuple[WheelInput, ...]
    stories: Mapping[str, frozenset[int]]  # file name → indexes into POOL


@st.composite
def releases(draw: st.DrawFn, max_stories: int = 3) -> Release:
    slots = draw(
        st.lists(
            st.tuples(st.sampled_from(PYTHONS), st.sampled_from(PLATFORMS)),
            min_size=1,
            max_size=7,
            unique=True,
        )
    )
    if draw(st.booleans()):
        slots.append(("py3-none", "any"))
    count = draw(st.integers(1, max_stories))
    stories = [frozenset(draw(st.sets(st.integers(0, len(POOL) - 1), max_size=7))) for _ in range(count)]
    wheels = []
    chosen = {}
    for python, platform in slots:
        story = stories[draw(st.integers(0, count - 1))]
        texts = [draw(st.sampled_from(POOL[i][0])) for i in sorted(story)]
        extras = sorted({extra for i in story for extra in POOL[i][1]})
        eol = draw(st.sampled_from(["\n", "\r\n"]))
        filename = f"demo-1.0-{python}-{platform}.whl"
        wheels.append(WheelInput(filename, build_metadata("demo", "1.0", texts, extras, eol=eol)))
        chosen[filename] = story
    return Release(tuple(wheels), chosen)


Meld = Callable[[Sequence[WheelInput]], Mapping[str, bytes]]
Check = Callable[[Release, Mapping[str, bytes]], None]


def engine(wheels: Sequence[WheelInput]) -> Mapping[str, bytes]:
    return meld_release(wheels).outputs


# --- deliberately broken melds, to show each check can fail ---------------------------------------


def _extras_of(wheel: WheelInput) -> set[str]:
    assert wheel.metadata is not None
    raw, _ = parse_email(wheel.metadata)
    return set(raw.get("provides_extra", []))


def union_without_markers(wheels: Sequence[WheelInput]) -> Mapping[str, bytes]:
    """Every wheel gets the plain union of all lists, no markers added, always re-rendered."""
    texts: dict[Requirement, str] = {}
    extras: set[str] = set()
    for wheel in wheels:
        assert wheel.metadata is not None
        for req in requirements_of(wheel.metadata):
            texts.setdefault(req, str(req))
        extras |= _extras_of(wheel)
    return {w.filename: build_metadata("demo", "1.0", list(texts.values()), sorted(extras)) for w in wheels}


def always_limited(wheels: Sequence[WheelInput]) -> Mapping[str, bytes]:
    """The engine's answer with a needless clause added to every marker (breaks "small markers")."""
    extra_clause = Marker('os_name != "java"')
    outputs = {}
    for name, data in meld_release(wheels).outputs.items():
        texts = []
        for req in requirements_of(data):
            req.marker = req.marker & extra_clause if req.marker is not None else extra_clause
            texts.append(str(req))
        extras = sorted(_extras_of(WheelInput(name, data)))
        outputs[name] = build_metadata("demo", "1.0", texts, extras)
    return outputs


# --- the checks -------------------------------------------------------------------------------


def consistent_and_faithful(release: Release, outputs: Mapping[str, bytes]) -> None:
    """Contract items 1, 2 and 5 (see ``meldkit.check_contract``)."""
    check_contract(release.wheels, outputs)


def transparent(release: Release, outputs: Mapping[str, bytes]) -> None:
    """Item 3: siblings that agree (however each spells it) are served upstream's bytes object."""
    for wheel in release.wheels:
        assert outputs[wheel.filename] is wheel.metadata, f"{wheel.filename} was rewritten"


def small_markers(release: Release, outputs: Mapping[str, bytes]) -> None:
    """Item 4: a requirement every wheel declares, or could not use anyway, keeps its own marker.

    "Could not use" is decided from platform tags alone, so only requirements whose marker reads
    platform variables are judged when some wheel lacks them, and only against platform wheels.
    """
    served = set(requirements_of(outputs[release.wheels[0].filename]))
    extras = sorted({e for story in release.stories.values() for i in story for e in POOL[i][1]})
    for index, (spellings, _, platform_only) in enumerate(POOL):
        original = Requirement(spellings[0])
        if not any(index in story for story in release.stories.values()):
            continue
        lacking = [w.filename for w in release.wheels if index not in release.stories[w.filename]]
        if lacking and not platform_only:
            continue
        if any(_could_use(original, filename, extras) for filename in lacking):
            continue
        assert original in served, f"{original} did not keep its own marker"


def _could_use(req: Requirement, filename: str, extras: Sequence[str]) -> bool:
    tags = parse_wheel_filename(filename)[3]
    if any(tag.platform == "any" for tag in tags):
        return True  # a pure wheel's platforms are not enumerable here: do not judge
    assert req.marker is not None
    return any(
        req.marker.evaluate({**env.markers(), "extra": extra})
        for env in environments_of(tags)
        for extra in ("", *extras)
    )


def run_property(
    check: Check, meld: Meld, strategy: st.SearchStrategy[Release], examples: int, *, shrink: bool = True
) -> None:
    @settings(
        max_examples=examples,
        # Shrinking only makes a report readable; when a failure is the expected outcome, skip it.
        phases=tuple(Phase) if shrink else (Phase.generate,),
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(strategy)
    def run(release: Release) -> None:
        check(release, meld(release.wheels))

    run()


def test_consistency_and_fidelity() -> None:
    run_property(consistent_and_faithful, engine, releases(), examples=100)


def test_transparency() -> None:
    run_property(transparent, engine, releases(max_stories=1), examples=60)


def test_small_markers() -> None:
    run_property(small_markers, engine, releases(), examples=100)


@pytest.mark.parametrize(
    ("check", "broken", "strategy", "message"),
    [
        (consistent_and_faithful, union_without_markers, releases(), r"lost|added"),
        (transparent, union_without_markers, releases(max_stories=1), r"was rewritten"),
        (small_markers, always_limited, releases(), r"did not keep its own marker"),
    ],
    ids=["fidelity", "transparency", "small-markers"],
)
def test_the_checks_can_fail(
    check: Check, broken: Meld, strategy: st.SearchStrategy[Release], message: str
) -> None:
    """The same properties find a counterexample against a deliberately broken meld."""
    with pytest.raises(AssertionError, match=message):
        run_property(check, broken, strategy, examples=300, shrink=False)


def _seed_shaped(release: Release) -> bool:
    nvidia = 4
    by_wheel = {w.filename: nvidia in release.stories[w.filename] for w in release.wheels}
    x86 = [name for name in by_wheel if "x86_64" in name and "universal2" not in name]
    others = [name for name in by_wheel if "aarch64" in name or "win_amd64" in name]
    return bool(x86 and others) and all(by_wheel[n] for n in x86) and not any(by_wheel[n] for n in others)


def test_generator_reaches_the_seed() -> None:
    """The generator produces the seed's shape; the meld keeps the CUDA line's marker there."""
    quick = settings(database=None, max_examples=2000, phases=(Phase.generate,))
    release = find(releases(), _seed_shaped, settings=quick)
    result = meld_release(release.wheels)
    assert result.report.disagreed
    check_contract(release.wheels, result.outputs)
    small_markers(release, result.outputs)
