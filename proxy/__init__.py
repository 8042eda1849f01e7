"""wheelmeld: a caching simple-index proxy that serves every wheel the meld of its siblings' metadata.

Layers, each a sub-package or module with one job (README.md, "Layout", says which way imports go):

- ``proxy.meld``      pure: the meld of one release's core metadata (no I/O).
- ``proxy.index``     pure: PEP 503/691/700/714 page model, parsers, renderers, content negotiation.
- ``proxy.cache``     the on-disk cache: atomic writes, locks, layout.
- ``proxy.network``   outbound HTTP: the upstream client, remote-zip reader, fetch boundaries (SSRF).
- ``proxy.service``   pages, project lists, metadata and files as plain values (no HTTP framework).
- ``proxy.server``    the HTTP edge: the ASGI app built by ``create_app(config)``.
- ``proxy.config``    frozen configuration from TOML + environment + CLI.
- ``proxy.cli``       the ``wheelmeld`` command.
"""

__version__ = "0.1.0"
