"""Whether to ask upstream for a PEP 658 file its page did not advertise: learned per project and route.

Some indexes serve ``<file>.metadata`` without saying so on their pages, some for a part of their
files only, some never (the PyTorch index). A probe that 404s is a wasted request; one that answers
saves a range read (one to three requests). Within a release the meld already asks one wheel first
and lets its answer decide for its siblings (``served_metadata``). Beyond that, what is known:

1. the project: while every probe of it was answered, a file a client waits on is probed alone,
   without the range read otherwise raced beside the probe (one request, not two). A project's
   misses do not send its other releases to range reads: on the live index here PEP 658 files go
   by release (grpcio 1.85.3: none of 60 wheels; 1.60.0: all 53), and doing so (tried, after one
   miss and after two) cost a cold ``tensorflow==2.13.0`` lock 3,333 requests (180 probes, 3,109
   ranges) where deciding per release sent 3,163 (1,656 probes, 1,463 ranges).
2. the route: after ``give_up`` misses and not one answer, projects not known yet are read with
   ranges only for ``pause`` seconds; then one probe is tried again (a miss pauses again), so an
   index that starts serving the files is noticed, and one answer enables probing for good.

State is bounded: one small record per route, at most ``max_projects`` projects (least recently
used dropped, which only costs a dropped project the raced range read again).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from proxy.cache.store import PageKey

__all__ = ["ProbeBook", "ProbePlan"]


class ProbePlan(enum.Enum):
    SKIP = "skip"  # range reads only: the route never answered a probe
    TRY = "try"  # probe, and for a waiting client read ranges meanwhile
    EXPECT = "expect"  # every probe of this project was answered: probe alone


@dataclass(slots=True)
class _Route:
    answered: bool = False
    misses: int = 0
    paused_until: float | None = None

    def paused(self, now: float) -> bool:
        return not self.answered and self.paused_until is not None and now < self.paused_until


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
        # By project page (a PageKey names its route too): whether every probe of it was answered.
        self._projects: OrderedDict[PageKey, bool] = OrderedDict()

    def plan(self, route: str, project: PageKey) -> ProbePlan:
        """What to do about an unadvertised PEP 658 file of ``project`` on ``route``."""
        if self._projects.get(project):
            self._projects.move_to_end(project)
            return ProbePlan.EXPECT
        state = self._routes.get(route)
        return ProbePlan.SKIP if state is not None and state.paused(self._clock()) else ProbePlan.TRY

    def doubted(self, route: str) -> bool:
        """Whether ``route`` has missed probes and never answered one (the PyTorch index, so far)."""
        state = self._routes.get(route)
        return state is not None and not state.answered and state.misses > 0

    def record(self, route: str, project: PageKey, *, found: bool) -> None:
        """What an unadvertised probe of ``project``'s file on ``route`` got."""
        self._projects[project] = found and self._projects.get(project, True)
        self._projects.move_to_end(project)
        while len(self._projects) > self._max_projects:
            self._projects.popitem(last=False)
        state = self._routes.setdefault(route, _Route())
        if found:
            state.answered = True
            return
        state.misses += 1
        if not state.answered and state.misses >= self._give_up:
            # Past a pause the count stays at the line: one more miss pauses the route again.
            state.paused_until = self._clock() + self._pause
