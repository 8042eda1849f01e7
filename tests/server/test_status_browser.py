"""The status page in a real browser: headless Chromium loads ``/`` from a running proxy that melded
the seed's torch release, and the test reads the DOM it dumps; a screenshot is kept for a person.

Skipped, saying so, where no ``chromium`` is installed (``.ci/run`` installs Debian's with apt).
The screenshot goes to ``$WHEELMELD_ARTIFACT_DIR`` when set (CI keeps it), else the test's temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.stack import Stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TORCH = "torch-2.7.0.dev20250116+cu126"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install Debian's `chromium` to run the browser test"
)


def _chromium(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Dom(HTMLParser):
    """Text of the elements with a class the test looks at, and every link."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_class: dict[str, list[str]] = {}
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._open: list[tuple[str, str | None, list[str]]] = []  # (tag, class, text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("div", "span", "a", "h1", "h2", "h3", "li", "td"):
            self._open.append((tag, values.get("href") if tag == "a" else values.get("class"), []))

    def handle_data(self, data: str) -> None:
        for _tag, _key, text in self._open:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                _tag, key, text = self._open.pop(index)
                joined = " ".join(" ".join(text).split())
                if tag == "a":
                    self.links.append((key or "", joined))
                elif key:
                    for name in key.split():
                        self.by_class.setdefault(name, []).append(joined)
                return


def test_the_status_page_in_a_browser(seed: Stack, tmp_path: Path) -> None:
    aarch64 = f"{TORCH}-cp311-cp311-linux_aarch64.whl"
    assert seed.client.get(seed.file("torch", aarch64, ".metadata")).status_code == 200
    assert seed.client.get(seed.page("torch")).status_code == 200
    url = seed.proxy.url + "/"

    dom = _Dom()
    dom.feed(_chromium(tmp_path / "profile", "--dump-dom", url))
    numbers = dict(_number(n) for n in dom.by_class["number"])
    assert numbers["releases melded"] == "1" and numbers["whose wheels disagreed"] == "1"
    assert numbers["from upstream"].endswith(("kB", "MB")), numbers  # with a unit, never raw bytes
    assert int(numbers["requests answered"]) >= 2
    assert numbers["errors (5xx)"] == "0" and numbers["stale answers (upstream failing)"] == "0"

    releases = dom.by_class["release"]
    assert len(releases) == 1, releases
    view = "/-/release/whl/nightly/cu126/torch/2.7.0.dev20250116%2Bcu126"
    assert (view, "torch 2.7.0.dev20250116+cu126") in dom.links
    # Grouped as `wheelmeld audit` groups it: each requirement once, under the wheels lacking it.
    groups = dom.by_class["group"]
    assert 1 <= len(groups) < 13, groups
    assert all(g.startswith("Missing on ") for g in groups)
    for requirement in ("nvidia-cudnn-cu12", "nvidia-nccl-cu12", "pytorch-triton"):
        assert releases[0].count(requirement) == 1, requirement
    assert "linux_aarch64 (cp311" in " ".join(dom.by_class["platforms"])
    assert ("/whl/", "/whl/") in dom.links  # routes, each linked to its project list

    shots = Path(os.environ.get("WHEELMELD_ARTIFACT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "status.png"
    _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")


def _number(text: str) -> tuple[str, str]:
    """``"1.2 MB from upstream"`` -> ``("from upstream", "1.2 MB")``: a figure, then its label."""
    parts = text.split(" ")
    value_words = 2 if len(parts) > 1 and parts[1] in ("B", "kB", "MB", "GB", "TB") else 1
    return " ".join(parts[value_words:]), " ".join(parts[:value_words]).replace(",", "")
