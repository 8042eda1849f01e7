"""The ASGI server: ``create_app(config)`` and the services it wires together."""

from proxy.server.app import create_app

__all__ = ["create_app"]
