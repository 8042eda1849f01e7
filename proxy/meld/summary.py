"""A meld's differences as a person reads them: grouped by the wheels that lack them, named by platform.

``wheelmeld audit`` prints this grouping and the status page shows it: one torch release whose 13
CUDA requirements are all missing on the same 16 wheels is one group of 13 lines under one platform
summary, not 13 copies of the same 16-wheel list. Pure (wheel file names through ``packaging``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .engine import AddedRequirement

__all__ = ["added_from_report", "by_lacking", "platform_summary"]


def platform_summary(filenames: Sequence[str]) -> str:
    """``linux_aarch64 (cp311, cp312), win_amd64 (cp311)``: wheels grouped by platform tag."""
    by_platform: dict[str, set[str]] = {}
    for filename in filenames:
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            by_platform.setdefault(filename, set())
            continue
        for tag in tags:
            by_platform.setdefault(tag.platform, set()).add(tag.interpreter)
    return ", ".join(
        f"{p} ({', '.join(sorted(by_platform[p]))})" if by_platform[p] else p for p in sorted(by_platform)
    )


def by_lacking(added: Iterable[AddedRequirement]) -> list[tuple[tuple[str, ...], list[AddedRequirement]]]:
    """The added requirements grouped by the set of wheels lacking them, in first-seen order."""
    groups: dict[tuple[str, ...], list[AddedRequirement]] = {}
    for item in added:
        groups.setdefault(tuple(item.lacking), []).append(item)
    return list(groups.items())


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def added_from_report(report: Mapping[str, object]) -> tuple[AddedRequirement, ...]:
    """``MeldReport.to_dict()["added"]`` read back; entries of another shape are skipped, since a
    report may come from a cache an older or newer wheelmeld wrote."""
    items = report.get("added")
    found: list[AddedRequirement] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("requirement"), str):
            continue
        result, marker = item.get("result"), item.get("marker")
        found.append(
            AddedRequirement(
                requirement=item["requirement"],
                result=result if isinstance(result, str) else None,
                marker=marker if isinstance(marker, str) else None,
                declared_by=_strings(item.get("declared_by")),
                lacking=_strings(item.get("lacking")),
            )
        )
    return tuple(found)
