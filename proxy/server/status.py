"""The human status page at ``/``: routes, cache, counters, and the recent releases that needed melding."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from proxy.config import Config
from proxy.server.observability import MeldLog, Metrics

__all__ = ["render_status"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;"
    "vertical-align:top}code{font-size:90%}"
)


def _added_rows(report: dict[str, Any]) -> str:
    rows = []
    for item in report.get("added", ()):
        if isinstance(item, dict):
            requirement = item.get("requirement", "")
            marker = item.get("marker") or "(own marker kept)"
            lacking = ", ".join(item.get("lacking", item.get("wheels_lacking", ())))
        else:
            requirement, marker, lacking = str(item), "", ""
        rows.append(
            f"<tr><td><code>{escape(str(requirement))}</code></td><td><code>{escape(str(marker))}</code></td>"
            f"<td>{escape(lacking)}</td></tr>"
        )
    return "".join(rows)


def render_status(config: Config, metrics: Metrics, meld_log: MeldLog) -> bytes:
    routes = "".join(
        f"<tr><td><a href='{escape(r.prefix)}/'>{escape(r.prefix)}/</a></td><td>{escape(r.upstream)}</td>"
        f"<td>{'on' if r.meld else 'off'}</td><td>{r.page_ttl:g} s</td></tr>"
        for r in config.routes
    )
    melds = []
    for entry in meld_log.recent():
        conflicts = "".join(f"<li>{escape(str(c))}</li>" for c in entry.report.get("conflicts", ()))
        melds.append(
            f"<h3>{escape(entry.page)} — {escape(entry.example_file)}</h3>"
            f"<p>{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(entry.at))}</p>"
            "<table><tr><th>requirement</th><th>marker added</th><th>wheels that lacked it</th></tr>"
            f"{_added_rows(entry.report)}</table>"
            + (f"<p>Conflicts markers cannot express:</p><ul>{conflicts}</ul>" if conflicts else "")
        )
    body = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>wheelmeld</title>"
        f"<style>{_STYLE}</style></head><body><h1>wheelmeld</h1>"
        f"<p>{'offline: no upstream is contacted' if config.offline else 'online'} · cache "
        f"<code>{escape(str(config.cache_dir))}</code></p>"
        "<h2>Routes</h2><table><tr><th>prefix</th><th>upstream</th><th>meld</th><th>page TTL</th></tr>"
        f"{routes}</table>"
        f"<h2>Counters</h2><p>melds {metrics.melds}, of which disagreed {metrics.melds_disagreed}; "
        f"conflicts {metrics.meld_conflicts}; melds unavailable {metrics.melds_unavailable}; "
        f"upstream bytes {metrics.upstream_bytes}. <a href='/metrics'>/metrics</a></p>"
        "<h2>Recent releases whose wheels disagreed</h2>"
        + ("".join(melds) or "<p>None yet.</p>")
        + "</body></html>"
    )
    return body.encode()
