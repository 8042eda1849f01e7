"""The meld engine: one consistent, faithful ``Requires-Dist`` for every wheel of a release.

Pure library (no I/O, no HTTP). The server groups a project's wheels by release and calls
:func:`meld_release`; the served ``.metadata`` of each wheel is ``result.outputs[filename]``.
"""

from .engine import (
    NO_SDIST,
    AddedRequirement,
    MeldLimits,
    MeldReport,
    MeldResult,
    NoSdist,
    SdistInput,
    Uncovered,
    WheelInput,
    meld_release,
)

__all__ = [
    "NO_SDIST",
    "AddedRequirement",
    "MeldLimits",
    "MeldReport",
    "MeldResult",
    "NoSdist",
    "SdistInput",
    "Uncovered",
    "WheelInput",
    "meld_release",
]
