"""Which wheel an installer picks in a cell where several are installable (PEP 425 tag priority).

Markers cannot tell ``manylinux_2_17`` from ``manylinux_2_28`` of one arch and Python, a
``py3-none-any`` wheel from the platform wheels beside it, or ``cp313t`` from ``cp313``. In such a cell
the meld follows the wheel an installer would take, ranked the way :func:`packaging.tags.sys_tags`
ranks tags: interpreter/ABI first (``cpXY-cpXY`` > ``abi3`` > ``none`` > ``pyXY``), platform second
(newest glibc/macOS first, arch-specific before fat, platform-specific before ``any``). The tag
lists come from packaging's own generators; only the platform order is ours, because packaging derives
it from the *running* machine.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from itertools import chain

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags

from .environments import Cell, platform_facts, python_facts

__all__ = ["cell_tag_ranks", "covers"]

# Installers on a glibc system never look at musllinux and vice versa, so the pair can only collide in
# marker space; glibc is by far the common case, hence first. ``linux_<arch>`` is the generic fallback.
_FAMILY_RANK = {"manylinux": 0, "macosx": 0, "win": 0, "android": 0, "ios": 0, "other": 0, "musllinux": 1}
_LAST_FAMILY = 2
_MAC_FAT_ORDER = {"intel": 1, "fat64": 2, "fat32": 3, "universal2": 4, "universal": 5}


def covers(tag: Tag, cell: Cell) -> bool:
    """Whether ``tag`` is installable in ``cell`` (the table of :mod:`proxy.meld.environments`)."""
    plat = platform_facts(tag.platform)
    if plat.sys_platform is not None and (
        plat.sys_platform != cell.sys_platform or cell.platform_machine not in plat.machines
    ):
        return False
    return python_facts(tag.interpreter, tag.abi).covers(cell.python, cell.implementation_name)


def _platform_key(platform: str, machine: str) -> tuple[int, tuple[int, ...], int, str]:
    facts = platform_facts(platform)
    # Arch-specific first, then the fat formats in the order packaging's mac_platforms lists them.
    arch = platform.rsplit("_", 1)[-1] if facts.family == "macosx" else ""
    fat = 0 if facts.machines == frozenset({machine}) else _MAC_FAT_ORDER.get(arch, len(_MAC_FAT_ORDER) + 1)
    newest_first = tuple(-part for part in facts.version)
    return (_FAMILY_RANK.get(facts.family, _LAST_FAMILY), newest_first, fat, platform)


@functools.lru_cache(maxsize=8192)
def cell_tag_ranks(cell: Cell, platforms: frozenset[str], abis: frozenset[str]) -> dict[Tag, int]:
    """Priority (lower is better) of every tag an installer in ``cell`` would accept.

    ``platforms`` are the release's platform tags that run on the cell's platform (``any`` excluded:
    packaging appends it itself); ``abis`` the release's ABI tags, used for interpreters whose ABI
    names are not derivable (PyPy). Tags the installer would not list rank after all listed ones.
    """
    ordered = sorted(platforms, key=lambda plat: _platform_key(plat, cell.platform_machine))
    major, minor = cell.python
    version = (major, minor)
    if cell.implementation_name == "cpython":
        # The default (GIL) build: free-threaded cpXYt wheels are not in its list and so lose to a
        # cpXY wheel that markers cannot tell apart from them (the conflict is reported).
        cp_abis = [f"cp{major}{minor}"] + ([f"cp{major}{minor}m"] if version < (3, 8) else [])
        interpreter = f"cp{major}{minor}"
        tags: Iterable[Tag] = chain(
            cpython_tags(version, cp_abis, ordered),
            compatible_tags(version, interpreter, ordered),
            # Free-threaded builds last: markers cannot tell them apart, the default build wins.
            (Tag(interpreter, f"{interpreter}t", platform) for platform in ordered),
        )
    else:
        abbr = {"pypy": "pp", "ironpython": "ip", "jython": "jy", "graalpy": "gp"}.get(
            cell.implementation_name, "xx"
        )
        interpreter = f"{abbr}{major}{minor}"
        own_abis = sorted(abi for abi in abis if abi not in {"none", "abi3"})
        tags = chain(
            generic_tags(interpreter, own_abis, ordered), compatible_tags(version, interpreter, ordered)
        )
    ranks: dict[Tag, int] = {}
    for index, tag in enumerate(tags):
        ranks.setdefault(tag, index)
    return ranks
