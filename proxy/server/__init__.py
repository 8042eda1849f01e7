"""The HTTP edge: ``create_app(config)``, the ASGI app in front of the services (``proxy.service``)."""

from proxy.server.app import create_app

__all__ = ["create_app"]
