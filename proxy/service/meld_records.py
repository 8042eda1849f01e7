"""A release's meld as the cache keeps it: what we serve for each wheel, and the meld's report.

One JSON file per release (``CacheStore.meld_path``): the sha256 of every wheel's served metadata,
the melded bytes where they differ from the wheel's own, and ``MeldReport.to_dict()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.cache.store import CacheStore, PageKey
from proxy.meld import MeldReport, MeldResult, WheelInput

__all__ = ["MeldRecord", "load_meld", "meld_bytes", "stored_melds"]


@dataclass(frozen=True, slots=True)
class MeldRecord:
    hashes: dict[str, str]  # filename -> sha256 of what we serve
    changed: dict[str, bytes]  # filename -> melded bytes, only where they differ from the original
    report: MeldReport

    @classmethod
    def of(cls, result: MeldResult, inputs: Sequence[WheelInput]) -> MeldRecord:
        """The record of ``result``, the meld of ``inputs``."""
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in result.outputs.items()}
        by_name = {wheel.filename: wheel.metadata for wheel in inputs}
        changed = {n: d for n, d in result.outputs.items() if d != by_name.get(n)}
        return cls(hashes=hashes, changed=changed, report=result.report)


def meld_bytes(record: MeldRecord) -> bytes:
    """The record as the cache (and the fleet's bucket) keeps it; ``load_meld`` reads it back."""
    doc = {
        "hashes": record.hashes,
        "changed": {n: base64.b64encode(b).decode() for n, b in record.changed.items()},
        "report": record.report.to_dict(),
    }
    return json.dumps(doc).encode()


def load_meld(raw: bytes) -> MeldRecord | None:
    """A stored meld read back; ``None`` for one that is damaged or not of this shape."""
    try:
        doc = json.loads(raw)
        return MeldRecord(
            hashes=dict(doc["hashes"]),
            changed={n: base64.b64decode(b) for n, b in doc["changed"].items()},
            report=MeldReport.from_dict(doc["report"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def stored_melds(store: CacheStore, key: PageKey) -> list[tuple[tuple[str, ...], MeldReport]]:
    """Every meld the cache holds for ``key``'s page, newest first: (its wheels, its report).

    Read-only, for the status page's per-release view; blocking (run it in a thread).
    """
    found = []
    for path in store.meld_paths(key):
        try:
            doc = json.loads(path.read_bytes())
            found.append((tuple(sorted(doc["hashes"])), MeldReport.from_dict(doc["report"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a record being replaced or unreadable: the status page skips it
    return found
