"""wheelmeld: a caching simple-index proxy that serves every wheel the meld of its siblings' metadata.

Layers, each a sub-package or module with one job:

- ``proxy.meld``      pure: the meld of one release's core metadata (no I/O).
- ``proxy.index``     pure: PEP 503/691/700/714 page model, parsers, renderers, content negotiation.
- ``proxy.network``   outbound HTTP: remote-zip metadata reader, fetch boundaries (SSRF).
- ``proxy.cache``     the on-disk cache: atomic writes, locks, layout.
- ``proxy.server``    the ASGI app built by ``create_app(config)``.
- ``proxy.config``    frozen configuration from TOML + environment + CLI.
- ``proxy.cli``       the ``wheelmeld`` command.
"""

__version__ = "0.1.0"
