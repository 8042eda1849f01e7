"""Whether to ask upstream for a PEP 658 file its page did not advertise: learned per project and route.

Some indexes serve ``<file>.metadata`` without saying so on their pages, some have it for a part of
their files only, some never (the PyTorch index). A probe that 404s is a wasted request; one that
answers saves a range read (one to three requests). What is known, strongest first:

1. the project's own probes: all answered, its files are probed alone (no range read raced beside
   them, as for a file nothing is known of); ``project_give_up`` misses and not one answer, its files
   go straight to range reads until ``pause`` seconds have passed; some of each, each release is
   tried as if nothing were known (its asked wheel's probe telling its siblings). One miss is not
   enough: the live index here lacks the files of its newest uploads only, so numpy's newest
   release 404s where the one before it answers for all its 71 wheels (sent to range reads after
   the first miss, one cold lock made 735 range reads where 620 and 71 more probes did).
2. the route, for projects not known yet: after ``give_up`` misses and not one answer, they are read
   with ranges only for ``pause`` seconds; then one probe is tried again (a miss pauses again), and
   one answer enables probing for good. A route that answered once is never paused: there the
   projects' own probes decide.

State is bounded: one small record per route, at most ``max_projects`` projects (least recently
used dropped, which only costs a dropped project a probe again).
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
    TRY = "try"  # nothing sure: probe, and for a waiting client read ranges meanwhile
    EXPECT = "expect"  # every probe of this project was answered: probe alone


@dataclass(slots=True)
class _Route:
    answered: bool = False  # some probe of a project without earlier answers found its file
    misses: int = 0
    paused_until: float | None = None

    def paused(self, now: float) -> bool:
        return not self.answered and self.paused_until is not None and now < self.paused_until


@dataclass(frozen=True, slots=True)
class _Project:
    answered: int
    missed: int
    at: float  # when it was last learned: misses are believed for ``pause`` seconds only


class ProbeBook:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        give_up: int = 8,
        project_give_up: int = 2,
        pause: float = 600.0,
        max_projects: int = 8192,
    ) -> None:
        self._clock = clock
        self._give_up = give_up
        self._project_give_up = project_give_up
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
            if known.answered:
                # Its answers win over whatever the route says.
                return ProbePlan.TRY if known.missed else ProbePlan.EXPECT
            if known.missed >= self._project_give_up and now < known.at + self._pause:
                return ProbePlan.SKIP
        state = self._routes.get(route)
        if state is not None and state.paused(now):
            return ProbePlan.SKIP
        return ProbePlan.TRY

    def record(self, route: str, project: PageKey, *, found: bool) -> None:
        """What an unadvertised probe of ``project``'s file on ``route`` got."""
        now = self._clock()
        previous = self._projects.get(project) or _Project(0, 0, now)
        self._projects[project] = _Project(previous.answered + found, previous.missed + (not found), now)
        self._projects.move_to_end(project)
        while len(self._projects) > self._max_projects:
            self._projects.popitem(last=False)
        if previous.answered:
            # The route's counts are about projects without answers: one that answered before says
            # nothing new of the others, whatever its next probe gets.
            return
        state = self._routes.setdefault(route, _Route())
        if found:
            state.answered = True
            return
        state.misses += 1
        if not state.answered and state.misses >= self._give_up:
            # Past a pause the count stays at the line: one more miss pauses the route again.
            state.paused_until = now + self._pause
