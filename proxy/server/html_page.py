"""The frame of wheelmeld's human pages (``/`` and ``/-/release/…``): one document, one style sheet.

Server-rendered, no script and no build step; every caller escapes what it puts in.
"""

from __future__ import annotations

from html import escape

__all__ = ["html_page"]

_STYLE = (
    ":root{color-scheme:light;--line:#d8dde3;--muted:#5b6470;--accent:#1f5fa8}"
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;padding:1.5em 2em;"
    "max-width:78em;color:#1d232a;background:#fff}"
    "h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;padding-bottom:.2em;"
    "border-bottom:1px solid var(--line)}h3{font-size:1.05em;margin:0 0 .3em}"
    "a{color:var(--accent)}code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}"
    "small,.muted{color:var(--muted)}"
    "table{border-collapse:collapse}td,th{border:1px solid var(--line);padding:.3em .6em;text-align:left;"
    "vertical-align:top}th{background:#f4f6f8;font-weight:600}"
    ".yes{background:#e6f4e6;text-align:center}.no{background:#fbeaea;text-align:center}"
    ".added{color:#8a4b00}"
    ".numbers{display:grid;grid-template-columns:repeat(auto-fill,minmax(15em,1fr));gap:.8em;margin:1em 0}"
    ".number{border:1px solid var(--line);border-radius:8px;padding:.7em .9em;background:#fafbfc}"
    ".number b{display:block;font-size:1.7em;font-weight:650;line-height:1.2}"
    ".number span{color:var(--muted);font-size:.9em}.number.warn b{color:#a33}"
    ".release{border:1px solid var(--line);border-radius:8px;padding:.8em 1em;margin:0 0 1em}"
    ".group{margin:.6em 0 0}.group ul{margin:.2em 0 0;padding-left:1.4em}"
    ".platforms{font-weight:600}"
)


def html_page(title: str, body: str) -> bytes:
    """A whole HTML document; ``body`` is markup already escaped by the caller."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()
