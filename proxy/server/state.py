"""What the edge's handlers share: the services of one worker, built in the lifespan, gone after it."""

from __future__ import annotations

import asyncio

from proxy.cache.page_journal import PageJournal
from proxy.cache.store import CacheStore, PageKey
from proxy.config import Config
from proxy.meld import MeldLimits
from proxy.network.pacing import Pace
from proxy.network.upstream import Upstream
from proxy.observe import MeldLog, Metrics
from proxy.server.ready import ReadyAnswers
from proxy.service.files import FileService
from proxy.service.pages import PageService
from proxy.service.project_lists import ProjectListService
from proxy.service.revalidated import RevalidatedFiles
from proxy.service.served_metadata import MetadataService

__all__ = ["AppState"]


class AppState:
    """Everything the handlers share; built in the lifespan, gone after it."""

    def __init__(self, config: Config, metrics: Metrics, journal: PageJournal | None) -> None:
        self.config = config
        self.store = CacheStore(config.cache_dir)
        self.metrics = metrics
        # Index requests under way in this worker; pages siblings fetched load here while it is idle.
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.meld_log = MeldLog()
        self.upstreams = {
            r.prefix: Upstream(
                r,
                metrics,
                config.upstream_timeout,
                config.upstream_concurrency,
                max_page_bytes=config.upstream_max_page_bytes,
                range_client=config.upstream_range_client,
            )
            for r in config.routes
        }
        self.pages = PageService(self.store, offline=config.offline, journal=journal, metrics=metrics)
        self.lists = ProjectListService(self.store, offline=config.offline)
        self.metadata = MetadataService(
            self.store,
            self.metrics,
            self.meld_log,
            offline=config.offline,
            limits=MeldLimits(config.meld_max_metadata_size, config.meld_max_requirements),
            incomplete_retry=config.meld_incomplete_retry,
        )
        pace = Pace(config.upstream_file_idle_timeout, config.upstream_file_min_rate)
        self.files = FileService(
            self.store, self.metrics, offline=config.offline, max_size=config.cache_max_size, pace=pace
        )
        self.revalidated = RevalidatedFiles(self.store, self.metrics, offline=config.offline)
        self.ready = ReadyAnswers(self.pages, self.revisions)

    def revisions(self, key: PageKey) -> tuple[int, int]:
        """What a page's advertised hashes depend on besides the page itself: its renderings and
        ready answers are kept per revisions."""
        return self.metadata.revision(key), self.files.revision(key)
