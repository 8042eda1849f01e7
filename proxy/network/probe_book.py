"""Whether to ask upstream for a PEP 658 file its page did not advertise: learned per project and route.

Some indexes serve ``<file>.metadata`` without saying so on their pages, some have it for a part of
their projects only (uploads before a backfill), some never (the PyTorch index). A probe that 404s
is a wasted round trip; one that answers saves a range read. What is known, strongest first:

1. the project's own probes: all answered, its files are probed alone (no range read raced beside
   them); all missed, its files go straight to range reads until ``pause`` seconds have passed;
   some of each (a few files lack them: the live index has projects like this), each release is
   tried as if nothing were known, its asked wheel's probe telling its siblings;
2. the route, for projects not known yet: after ``give_up`` misses and not one answer, they are read
   with ranges only for ``pause`` seconds; then one probe is tried again (a miss pauses again), and
   one answer enables probing for good. A route that answered once is never paused: on the live
   index a few projects lack the files, their first probes 404 in bunches as uv asks many at once,
   and pausing there (tried) sent 738 range reads where 621 and 71 more probes did (one lock).

State is bounded: one small record per route, at most ``max_projects`` projects (least recently
used dropped, which only costs a dropped project one probe again).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from proxy.cache.store import PageKey

__all__ = ["ProbeBook", "ProbePlan"]


class ProbePlan(enum.Enum):
    SKIP = "skip"  # range reads only: this project's (or, unknown project, the route's) probes miss
    TRY = "try"  # nothing known: probe, and for a waiting client read ranges meanwhile
    EXPECT = "expect"  # every probe of this project was answered: probe alone


class _Seen(enum.Enum):
    FOUND = "found"  # every probe of the project was answered
    MISSING = "missing"  # every probe 404'd
    MIXED = "mixed"  # some of each: a project-wide guess would be wrong for some of its files

    def after(self, found: bool) -> _Seen:
        if self is _Seen.MIXED or self is (_Seen.MISSING if found else _Seen.FOUND):
            return _Seen.MIXED
        return self


@dataclass(slots=True)
class _Route:
    answered: bool = False  # some project's first probe found its file
    misses: int = 0
    paused_until: float | None = None

    def paused(self, now: float) -> bool:
        return not self.answered and self.paused_until is not None and now < self.paused_until


@dataclass(frozen=True, slots=True)
class _Project:
    seen: _Seen
    at: float  # when it was last learned: MISSING is believed for ``pause`` seconds only


class ProbeBook:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        give_up: int = 8,
        pause: float = 600.0,
        max_projects: int = 8192,
    ) -> None:
        self._clock = clock
        self._give_up = give_up
        self._pause = pause
        self._max_projects = max_projects
        self._routes: dict[str, _Route] = {}
        # By project page (a PageKey names its route too).
        self._projects: OrderedDict[PageKey, _Project] = OrderedDict()

    def plan(self, route: str, project: PageKey) -> ProbePlan:
        """What to do about an unadvertised PEP 658 file of ``project`` on ``route``."""
        now = self._clock()
        known = self._projects.get(project)
        if known is not None:
            self._projects.move_to_end(project)
            if known.seen is _Seen.FOUND:
                return ProbePlan.EXPECT
            if known.seen is _Seen.MIXED:
                return ProbePlan.TRY  # its answers win over a route that stopped probing
            if now < known.at + self._pause:
                return ProbePlan.SKIP
        state = self._routes.get(route)
        if state is not None and state.paused(now):
            return ProbePlan.SKIP
        return ProbePlan.TRY

    def record(self, route: str, project: PageKey, *, found: bool) -> None:
        """What an unadvertised probe of ``project``'s file on ``route`` got."""
        now = self._clock()
        previous = self._projects.get(project)
        first = _Seen.FOUND if found else _Seen.MISSING
        self._projects[project] = _Project(first if previous is None else previous.seen.after(found), now)
        self._projects.move_to_end(project)
        while len(self._projects) > self._max_projects:
            self._projects.popitem(last=False)
        if previous is not None and previous.seen is not _Seen.MISSING:
            # The route's counts are about projects not known yet (or whose misses ran out): one
            # that answered before says nothing new of the others, whatever its next probe gets.
            return
        state = self._routes.setdefault(route, _Route())
        if found:
            state.answered = True
            return
        state.misses += 1
        if not state.answered and state.misses >= self._give_up:
            # Past a pause the count stays at the line: one more miss pauses the route again.
            state.paused_until = now + self._pause
