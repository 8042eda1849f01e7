"""Simple-index pages: the model, PEP 503/691 parsers and renderers, and ``Accept`` negotiation.

Pure code (no HTTP, no cache). Modules: ``model`` (frozen values), ``parse`` (upstream bytes ->
model; ``parse_html`` / ``parse_json`` underneath), ``render`` (model -> bytes), ``negotiate``
(``Accept`` / ``?format=`` -> media type), ``errors`` (``PageParseError``, ``NoAcceptableFormat``).
"""

from __future__ import annotations

from .errors import NoAcceptableFormat, PageParseError
from .model import DistFile, ProjectList, ProjectPage, versions_from_files
from .negotiate import HTML_TEXT, HTML_V1, JSON_V1, choose_content_type
from .parse import parse_project_list, parse_project_page
from .render import render_list_html, render_list_json, render_project_html, render_project_json

__all__ = [
    "HTML_TEXT",
    "HTML_V1",
    "JSON_V1",
    "DistFile",
    "NoAcceptableFormat",
    "PageParseError",
    "ProjectList",
    "ProjectPage",
    "choose_content_type",
    "parse_project_list",
    "parse_project_page",
    "render_list_html",
    "render_list_json",
    "render_project_html",
    "render_project_json",
    "versions_from_files",
]
