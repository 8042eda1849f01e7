"""Live fidelity of universal locks, with and without wheelmeld, on real releases whose wheels disagree.

For each case (one real release whose wheels' canonical requirement sets differ, found with
``wheelmeld audit``), on five platforms, the truth is what ``uv pip compile --python-platform X``
resolves against the upstream directly (it may build an sdist there: allowed). A universal
``uv lock`` is right on a platform when the pins its ``uv export`` selects there are exactly that
truth; a case is right only when every platform is. Both locks are checked: one against the
upstream directly, one through a wheelmeld on 127.0.0.1 in front of it. A platform where the
release cannot be installed at all (compile finds no solution) is not compared.

A universal resolution may pick, for every platform, a dependency version that has no wheel for one
of them, where a per-platform resolution falls back to an older one: that is uv's universal
resolution, not the metadata. To tell the two apart, the proxied lock is made once more with
``tool.uv.required-environments`` naming the installable platforms, which makes uv fork on them.

The upstream is the index this machine's uv/pip already use (``discover_default_index``): no
registry is named here. Regenerate ``docs/fidelity.md`` (a few minutes on a warm uv cache)::

    WHEELMELD_LIVE=1 .venv/bin/python -m tests.e2e.fidelity --write docs/fidelity.md

``tests/e2e/test_fidelity_live.py`` runs the same cases as tests (``-m live``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.e2ekit import (
    PLATFORMS,
    ClientError,
    Clients,
    Pin,
    Platform,
    project_pyproject,
    selected_by_export,
    write_project,
)

__all__ = ["CASES", "FIVE_PLATFORMS", "Case", "CaseResult", "Verdict", "check_case", "render_table"]


def _platform(name: str, uv_platform: str, base: str, **environment: str) -> Platform:
    return Platform(name, uv_platform, {**PLATFORMS[base].environment, **environment})


FIVE_PLATFORMS: tuple[Platform, ...] = (
    _platform("linux-x86_64", "x86_64-unknown-linux-gnu", "linux-x86_64"),
    _platform("linux-aarch64", "aarch64-unknown-linux-gnu", "linux-aarch64"),
    _platform("macos-arm64", "aarch64-apple-darwin", "macos-arm64"),
    _platform("macos-x86_64", "x86_64-apple-darwin", "macos-arm64", platform_machine="x86_64"),
    _platform("windows-amd64", "x86_64-pc-windows-msvc", "windows-amd64"),
)


@dataclass(frozen=True, slots=True)
class Case:
    project: str
    version: str
    note: str  # what its wheels disagree about (from ``wheelmeld audit``)
    # Why the proxied lock is not right, when that is uv's universal resolution (a dependency
    # version without a wheel somewhere), not the metadata.
    known: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


# Releases with CPython 3.11 wheels whose wheels' canonical Requires-Dist sets differ (audited
# 2026-12-01 with ``wheelmeld audit PROJECT --versions ...``).
_TF_IO = "tensorflow-io-gcs-filesystem: the newest has no Windows wheel; per platform, 0.31.0 is picked"
_TF_SPLIT = "Linux and macOS x86_64 wheels alone list the real requirements; the others are meta-packages"
CASES: tuple[Case, ...] = (
    Case("torch", "2.1.0", "Linux x86_64 wheels alone: 11 nvidia-* and triton"),
    Case("torch", "2.1.1", "Linux wheels alone: jinja2 under the dynamo extra"),
    Case("torch", "2.4.1", "CPython 3.12 wheels alone: setuptools"),
    Case("tensorflow", "2.13.0", _TF_SPLIT, _TF_IO),
    Case("tensorflow", "2.14.0", _TF_SPLIT, _TF_IO),
    Case("tensorflow", "2.15.0", _TF_SPLIT, _TF_IO),
    Case("tensorflow", "2.15.1", "Linux aarch64 and Windows wheels alone: the tensorflow-macos line", _TF_IO),
    Case("tensorflow", "2.16.1", "Linux x86_64 and Windows wheels alone: tensorflow-intel and more", _TF_IO),
    Case("open3d", "0.18.0", "Linux x86_64 and Windows wheels alone: ipywidgets and other Jupyter lines"),
    Case("open3d", "0.19.0", "Windows wheels lack addict, pillow, matplotlib and more"),
    Case(
        "mediapipe",
        "0.10.11",
        "Windows wheels lack jaxlib and torch",
        "the newest torch and jax have macOS wheels only for macOS versions newer than uv's default"
        " targets, so per platform uv picks older ones; required-environments cannot name a macOS version",
    ),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One universal lock's outcome against the per-platform truth."""

    failed: str | None = None  # the lock itself failed: its first error line
    wrong: tuple[str, ...] = ()  # per wrong platform: what differs

    @property
    def right(self) -> bool:
        return self.failed is None and not self.wrong

    @property
    def wrong_platforms(self) -> frozenset[str]:
        return frozenset(w.partition(":")[0] for w in self.wrong)

    def text(self) -> str:
        if self.failed is not None:
            return "lock fails"
        return "right" if not self.wrong else f"wrong on {len(self.wrong)}"


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    direct: Verdict
    proxy: Verdict
    proxy_required: Verdict  # through wheelmeld, ``required-environments`` set
    uninstallable: tuple[str, ...]  # platforms where compile found no solution (not compared)

    def why(self) -> str:
        parts = [f"known: {self.case.known}"] if self.case.known and not self.proxy.right else []
        labelled = (("direct", self.direct), ("proxy", self.proxy), ("required-envs", self.proxy_required))
        for label, verdict in labelled:
            if verdict.failed is not None:
                parts.append(f"{label}: {verdict.failed}")
            parts += [f"{label} {w}" for w in verdict.wrong]
        if self.uninstallable:
            parts.append(f"not installable on {', '.join(self.uninstallable)} (not compared)")
        return "; ".join(parts) or "every platform matches"


def _first_error(exc: ClientError) -> str:
    """uv's first error line, URLs left out (the table must not name the index)."""
    lines = [_URL.sub("<url>", line.strip()) for line in str(exc).splitlines()]
    useful = [line for line in lines if line.startswith(("error:", "cause:", "╰─▶", "×"))]
    return (useful or lines[-1:] or ["(no output)"])[0][:200].replace("|", "/")


_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s`'\")]+", re.IGNORECASE)


def _verdict(
    clients: Clients, project: Path, truth: dict[str, frozenset[Pin] | None], platforms: Sequence[Platform]
) -> Verdict:
    try:
        clients.lock(project)
    except ClientError as exc:
        return Verdict(failed=_first_error(exc))
    exported = clients.export(project)
    wrong = []
    for platform in platforms:
        want = truth[platform.name]
        if want is None:
            continue
        got = selected_by_export(exported, platform)
        if got != want:
            only_lock = ", ".join(f"{n} {v}" for n, v in sorted(got - want)) or "-"
            only_truth = ", ".join(f"{n} {v}" for n, v in sorted(want - got)) or "-"
            wrong.append(f"{platform.name}: lock only [{only_lock}], compile only [{only_truth}]")
    return Verdict(wrong=tuple(wrong))


def check_case(
    clients: Clients,
    case: Case,
    upstream: str,
    proxied: str,
    workdir: Path,
    platforms: Sequence[Platform] = FIVE_PLATFORMS,
) -> CaseResult:
    """Lock ``case`` against ``upstream`` directly and through ``proxied``; compare with the truth."""
    truth: dict[str, frozenset[Pin] | None] = {}
    for platform in platforms:
        try:
            truth[platform.name] = clients.compile([case.requirement], platform, upstream)
        except ClientError:
            truth[platform.name] = None
    installable = [p for p in platforms if truth[p.name] is not None]
    verdicts = []
    for label, index, required in (
        ("direct", upstream, ()),
        ("proxy", proxied, ()),
        ("proxy-required", proxied, installable),
    ):
        pyproject = project_pyproject(
            f"fidelity-{case.project}", [case.requirement], index, requires_python="==3.11.*"
        )
        if required:
            pyproject += (
                f"\n[tool.uv]\nrequired-environments = {json.dumps([_marker(p) for p in required])}\n"
            )
        project = write_project(workdir / f"{case.project}-{case.version}-{label}", pyproject)
        verdicts.append(_verdict(clients, project, truth, platforms))
    uninstallable = tuple(name for name, pins in truth.items() if pins is None)
    return CaseResult(case, *verdicts, uninstallable)


def _marker(platform: Platform) -> str:
    env = platform.environment
    return f"sys_platform == '{env['sys_platform']}' and platform_machine == '{env['platform_machine']}'"


def render_table(results: Iterable[CaseResult]) -> str:
    rows = list(results)
    right = sum(r.proxy.right for r in rows), sum(r.direct.right for r in rows)
    lines = [
        "# Fidelity of universal locks on real releases whose wheels disagree",
        "",
        "Generated by `tests/e2e/fidelity.py` (see its docstring for the method); regenerate with",
        "",
        "```console",
        "WHEELMELD_LIVE=1 .venv/bin/python -m tests.e2e.fidelity --write docs/fidelity.md",
        "```",
        "",
        "Truth per platform: `uv pip compile --python-platform X --python-version 3.11` against the",
        "upstream. A lock is right when, on each of " + ", ".join(p.uv_platform for p in FIVE_PLATFORMS),
        "(CPython 3.11), the pins its `uv export` selects equal that truth. Right through wheelmeld: "
        f"{right[0]} of {len(rows)}; directly: {right[1]} of {len(rows)}.",
        "",
        "The last column is the proxied lock again, with `tool.uv.required-environments` naming the",
        "platforms the release installs on (see the docstring): where it is right and the plain lock is",
        "not, the difference is uv's universal resolution, not the metadata.",
        "",
        "| case | wheels disagree on | direct `uv lock` | via wheelmeld | why | wheelmeld + required-envs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.case.requirement} | {r.case.note} | {r.direct.text()} | {r.proxy.text()} | {r.why()} "
            f"| {r.proxy_required.text()} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the table here (default: print it)")
    parser.add_argument("--case", action="append", help="only these projects (repeatable)")
    args = parser.parse_args(argv)
    if os.environ.get("WHEELMELD_LIVE") != "1":
        parser.error("this talks to the real index: set WHEELMELD_LIVE=1")
    from proxy.default_index import discover_default_index
    from tests.support.proxy import ProxyServer, proxy_config

    upstream = discover_default_index().url
    cases = [c for c in CASES if not args.case or c.project in args.case]
    results = []
    with tempfile.TemporaryDirectory(prefix="wheelmeld-fidelity-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        clients = Clients(home=root / "home", uv_cache=root / "uv-cache")
        with ProxyServer(proxy_config(root / "proxy-cache", {"/simple": upstream})) as proxy:
            for case in cases:
                result = check_case(clients, case, upstream, f"{proxy.url}/simple", root)
                print(
                    f"{case.requirement}: direct {result.direct.text()}, proxy {result.proxy.text()}",
                    file=sys.stderr,
                )
                results.append(result)
    table = render_table(results)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(table, encoding="utf-8")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
