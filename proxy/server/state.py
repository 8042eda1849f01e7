"""What the edge's handlers share: the services of one worker, built in the lifespan, gone after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

from proxy.cache.leases import Leases
from proxy.cache.page_journal import PageJournal
from proxy.cache.shared import SharedTier
from proxy.cache.store import CacheStore
from proxy.config import Config, RouteConfig
from proxy.index.negotiate import JSON_V1
from proxy.meld import MeldLimits
from proxy.network.pacing import Pace
from proxy.network.upstream import Upstream
from proxy.observe import MeldLog, Metrics
from proxy.server.ready import ReadyAnswers
from proxy.service.ahead import AheadLimits, AheadService
from proxy.service.files import FileService
from proxy.service.page_views import PageViews
from proxy.service.pages import PageEntry, PageService
from proxy.service.project_lists import ProjectListService
from proxy.service.revalidated import RevalidatedFiles
from proxy.service.served_metadata import MetadataService

__all__ = ["AppState"]


def _redirect(config: Config) -> timedelta | None:
    """How long a file download's presigned URL lives, if files are answered with one.

    Never while ``[auth]`` is on: a presigned URL is a bearer token for its lifetime, so a client
    (or a log, or a cache in between) could hand the file on to anyone, past the route's credentials.
    """
    if config.cache_backend != "s3" or not config.s3_redirect_files or config.auth.enabled:
        return None
    return timedelta(seconds=config.s3_presign_expiry)


class AppState:
    """Everything the handlers share; built in the lifespan, gone after it."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        journal: PageJournal | None,
        shared: SharedTier | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,  # running ahead's (tests set it)
    ) -> None:
        self.config = config
        self.leases = _leases(config, metrics)
        self.store = CacheStore(config.cache_dir, leases=self.leases)
        self.shared = shared  # the fleet's bucket in front of upstream (backend s3), else None
        self.metrics = metrics
        # Index requests under way in this worker; pages siblings fetched load here while it is idle.
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.meld_log = MeldLog()
        self.upstreams = {r.prefix: _upstream(config, r, metrics) for r in config.routes}
        self.pages = PageService(self.store, offline=config.offline, journal=journal, metrics=metrics)
        self.lists = ProjectListService(self.store, offline=config.offline)
        self.metadata = MetadataService(
            self.store,
            self.metrics,
            self.meld_log,
            offline=config.offline,
            limits=MeldLimits(config.meld_max_metadata_size, config.meld_max_requirements),
            incomplete_retry=config.meld_incomplete_retry,
            shared=shared,
        )
        pace = Pace(config.upstream_file_idle_timeout, config.upstream_file_min_rate)
        self.files = FileService(
            self.store,
            self.metrics,
            offline=config.offline,
            max_size=config.cache_max_size,
            pace=pace,
            shared=shared,
            redirect=_redirect(config),
        )
        limits = AheadLimits(
            depth=0 if config.offline else config.meld_run_ahead_depth,
            releases=config.meld_run_ahead_releases,
            concurrency=config.meld_run_ahead_concurrency,
            window=config.meld_run_ahead_window,
        )
        self.ahead = AheadService(self.pages, self.metadata, metrics, limits, clock=clock)
        self.metadata.on_first_metadata = self.ahead.first_metadata
        self.revalidated = RevalidatedFiles(self.store, self.metrics, offline=config.offline)
        self.views = PageViews(self.pages, self.store, self.metadata, self.files)
        self.ready = ReadyAnswers(self.views)

    async def render_ahead(self, entry: PageEntry) -> None:
        """Render a page loaded ahead as uv and pip ask for it (PEP 691 JSON), before they do."""
        upstream = next((u for u in self.upstreams.values() if u.route.name == entry.key.route), None)
        if upstream is not None:
            await self.views.body(self.views.view_of(entry), upstream.route.meld, JSON_V1)


def _upstream(config: Config, route: RouteConfig, metrics: Metrics) -> Upstream:
    return Upstream(
        route,
        metrics,
        config.upstream_timeout,
        config.upstream_concurrency,
        max_page_bytes=config.upstream_max_page_bytes,
        range_client=config.upstream_range_client,
    )


def _leases(config: Config, metrics: Metrics) -> Leases | None:
    if not config.redis_url:
        return None
    from proxy.cache.redis_leases import RedisLeases  # the optional [coordination] extra

    return RedisLeases(config.redis_url, ttl=config.lease_ttl, on_outcome=metrics.lease)
