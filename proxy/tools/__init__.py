"""Offline and fleet tools built on the server's own parts: ``audit``, ``prefetch`` and ``bundle``.

Each tool reuses what serving uses (cache store, upstream client, metadata readers, the meld), so
what a tool finds or fills is exactly what ``wheelmeld serve`` would find or serve.
"""
