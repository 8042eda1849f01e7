"""What one meld found and did: the report the status pages, the meld log and the cache read.

``to_dict`` is its JSON form (kept in the cache beside the meld); ``from_dict`` reads that back,
taking each field only in the shape ``to_dict`` writes, so a report from an older proxy or a
damaged file gives a ``ValueError``, never a report of the wrong type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

__all__ = ["AddedRequirement", "MeldReport", "Uncovered"]


@dataclass(frozen=True, slots=True)
class AddedRequirement:
    """A requirement not every wheel (and static sdist) declared, and what the meld made of it."""

    requirement: str  # canonical text as the declaring wheels (or the sdist) wrote it
    result: str | None  # canonical text in R*; None when dropped
    marker: str | None  # the marker added; None when the original marker was kept (contract item 4)
    declared_by: tuple[str, ...]  # file names of the wheels (and the static sdist) declaring it
    lacking: tuple[str, ...]  # file names of those not declaring it


class Uncovered(Enum):
    """How the meld decides the environments no wheel of the release covers."""

    FREE = "free"  # the caller did not say whether an sdist exists: don't-care for the marker search
    SDIST = "sdist"  # a static sdist decides them: R* gives there exactly what its Requires-Dist gives
    NOTHING = "nothing"  # no sdist: nothing installs there, requirements only for them are dropped
    DYNAMIC = "dynamic"  # the sdist's requirements are computed at build time: left to the sdist
    UNAVAILABLE = "unavailable"  # the sdist's metadata could not be had or used: left to the sdist


@dataclass(frozen=True, slots=True)
class MeldReport:
    """What the meld found and did; :meth:`to_dict` is for a status page or a log line."""

    project: str | None
    version: str | None
    wheels: int
    disagreed: bool
    complete: bool  # every wheel of the release took part; False → the caller must not cache
    added: tuple[AddedRequirement, ...] = ()
    provides_extra: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    problems: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    changed: tuple[str, ...] = ()
    uncovered: Uncovered = Uncovered.FREE  # how environments no wheel covers were decided
    # Environments no wheel covers that the sdist decides at build time (rules DYNAMIC, UNAVAILABLE).
    left_to_sdist: tuple[str, ...] = ()
    # Requirements left out of R*: they could apply only where nothing can be installed (NOTHING).
    dropped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "project": self.project,
            "version": self.version,
            "wheels": self.wheels,
            "disagreed": self.disagreed,
            "complete": self.complete,
            "added": [
                {
                    "requirement": item.requirement,
                    "result": item.result,
                    "marker": item.marker,
                    "declared_by": list(item.declared_by),
                    "lacking": list(item.lacking),
                }
                for item in self.added
            ],
            "provides_extra": list(self.provides_extra),
            "conflicts": list(self.conflicts),
            "problems": dict(self.problems),
            "changed": list(self.changed),
            "uncovered": self.uncovered.value,
            "left_to_sdist": list(self.left_to_sdist),
            "dropped": list(self.dropped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeldReport:
        """The report ``to_dict`` wrote; raises ``ValueError`` for any field of another shape."""
        try:
            return cls(
                project=_optional_text(data.get("project")),
                version=_optional_text(data.get("version")),
                wheels=_number(data.get("wheels", 0)),
                disagreed=_flag(data.get("disagreed", False)),
                complete=_flag(data.get("complete", True)),
                added=tuple(_added(item) for item in _items(data.get("added", ()))),
                provides_extra=_texts(data.get("provides_extra", ())),
                conflicts=_texts(data.get("conflicts", ())),
                problems=MappingProxyType(_text_map(data.get("problems", {}))),
                changed=_texts(data.get("changed", ())),
                uncovered=Uncovered(data.get("uncovered", Uncovered.FREE.value)),
                left_to_sdist=_texts(data.get("left_to_sdist", ())),
                dropped=_texts(data.get("dropped", ())),
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not a meld report: {exc}") from exc


def _added(item: object) -> AddedRequirement:
    if not isinstance(item, Mapping):
        raise ValueError(f"an added requirement is a mapping, not {type(item).__name__}")
    requirement = item.get("requirement")
    if not isinstance(requirement, str):
        raise ValueError("an added requirement names its requirement")
    return AddedRequirement(
        requirement,
        _optional_text(item.get("result")),
        _optional_text(item.get("marker")),
        _texts(item.get("declared_by", ())),
        _texts(item.get("lacking", ())),
    )


def _items(value: object) -> list[object]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return list(value)


def _texts(value: object) -> tuple[str, ...]:
    items = _items(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError("expected a list of strings")
    return tuple(str(item) for item in items)


def _text_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("expected a mapping of strings to strings")
    return {str(k): str(v) for k, v in value.items()}


def _optional_text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value


def _number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {type(value).__name__}")
    return value
