"""The exceptions of the simple-index page layer (PEP 503 / 691 pages and ``Accept`` negotiation).

Both are ``ValueError`` subclasses carrying a one-line reason, raised ``from`` their cause:

- ``PageParseError``: an upstream page cannot be understood (garbage or truncated JSON, a PEP 691
  ``api-version`` major we do not speak, a ``files`` entry without ``filename`` / ``url``...).
  The server maps it to 502. Its subclass ``NoProjectName``: the page URL names no project (an
  index's root), so the page can only be a project list.
- ``NotAcceptable``: no representation we serve matches the client's ``Accept`` / ``?format=``.
  The server maps it to 406.
"""

from __future__ import annotations

__all__ = ["NoProjectName", "NotAcceptable", "PageParseError"]


class PageParseError(ValueError):
    """An upstream simple-index page could not be parsed."""


class NoProjectName(PageParseError):
    """A project page was asked of a URL whose path names no project."""


class NotAcceptable(ValueError):
    """No page representation matches what the client accepts."""
