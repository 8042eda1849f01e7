"""What the cache raises when the disk refuses a write: the services decide what to serve instead.

A full or read-only cache is an operating condition, not a bug: pages, metadata and files are then
served without being kept (see ``proxy.server``), so a write failure is typed by its cause rather
than left as an ``OSError`` anywhere below a request.
"""

from __future__ import annotations

import enum
import errno

__all__ = ["CacheFault", "CacheWriteError"]


class CacheFault(enum.Enum):
    FULL = "full"  # no space (or quota) left
    READ_ONLY = "read-only"  # a read-only mount, or no permission to write
    OTHER = "error"  # any other refusal (an I/O error)

    @classmethod
    def of(cls, exc: OSError) -> CacheFault:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return cls.FULL
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return cls.READ_ONLY
        return cls.OTHER


class CacheWriteError(Exception):
    """The cache could not keep something; ``fault`` says why, ``str()`` is a one-line reason."""

    def __init__(self, fault: CacheFault, reason: str) -> None:
        super().__init__(reason)
        self.fault = fault

    @classmethod
    def of(cls, exc: OSError, what: str) -> CacheWriteError:
        fault = CacheFault.of(exc)
        return cls(fault, f"cache {fault.value}: cannot write {what} ({exc.strerror or exc})")
