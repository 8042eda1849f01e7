"""A meld's differences as a person reads them: grouped by the wheels that lack them, named by platform.

``wheelmeld audit`` prints this grouping and the status page shows it: one torch release whose 13
CUDA requirements are all missing on the same 16 wheels is one group of 13 lines under one platform
summary, not 13 copies of the same 16-wheel list. Pure (wheel file names through ``packaging``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .report import AddedRequirement

__all__ = ["by_lacking", "platform_summary"]


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
