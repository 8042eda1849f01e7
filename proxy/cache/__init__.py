"""The on-disk cache: layout, atomic writes, and locks that hold across worker processes."""

from proxy.cache.store import CacheStore, PageKey

__all__ = ["CacheStore", "PageKey"]
