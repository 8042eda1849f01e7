"""Which pages the workers of one ``wheelmeld serve --workers N`` run wrote: each loads the others'.

Workers share the cache on disk but each keeps its own parsed pages in memory, and a project page
read from disk costs a parse (a 15,000-file page: 0.2 s of CPU). Without this, the first warm
``uv lock`` after a cold one parsed, on one worker, every page the other had fetched: 0.4 s or
1.4 s depending on where uv's connections landed (benchmarks/README.md). Now every worker appends one
line per page it fetched anew to a journal its siblings follow, and loads theirs while idle.

The journal is a plain append-only file that lives as long as the run: the parent process makes it
(private, in the system's temp directory, with ``mkstemp``) and removes it at exit. Each line is
``<pid> <page label>`` written with one ``O_APPEND`` write, so lines from two workers never
interleave. A line that is not a page this cache could hold (a damaged or foreign file) is skipped:
the journal only ever saves work.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proxy.cache.store import PageKey
from proxy.errors import BadRequest

__all__ = ["PageJournal"]

log = logging.getLogger("wheelmeld")

# A page label is a route name and safe path components: far below what one write keeps whole.
_MAX_LINE = 4096


class PageJournal:
    """One worker's end of the journal: ``record`` its own pages, ``others`` for its siblings'."""

    def __init__(self, path: Path, worker: str | None = None) -> None:
        self.path = path
        self._pid = worker or str(os.getpid())  # who "this worker" is: its process id
        self._offset = 0
        self._partial = b""  # a line a sibling was still writing when this one last read
        self._broken = False  # said once in the log when the journal cannot be written

    def record(self, key: PageKey) -> None:
        """Say this worker stored a new copy of ``key``'s page (blocking: call it in a thread).

        Never raises: the journal only saves sibling workers some work, so a page fetch must not fail
        with it. The file is never made here (nor through a symbolic link): in a shared temp
        directory, a journal that vanished is not made again where someone else could have put one.
        """
        line = f"{self._pid} {key.label}\n".encode()
        if len(line) > _MAX_LINE:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._broken:
                self._broken = True
                log.warning("page journal %s cannot be written (%s); pages load on demand", self.path, exc)

    def others(self) -> list[PageKey]:
        """Pages the other workers stored since the last call, oldest first, each once (blocking)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > _MAX_LINE:
            self._partial = b""  # not a line any worker writes: never let it grow
        keys: dict[PageKey, None] = {}
        for line in lines:
            pid, _, label = line.decode("utf-8", "replace").partition(" ")
            if pid == self._pid or not label:
                continue
            route, *path = label.split("/")
            try:
                keys[PageKey(route, tuple(path))] = None
            except BadRequest:
                continue
        return list(keys)
