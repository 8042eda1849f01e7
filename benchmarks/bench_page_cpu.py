"""CPU a cold big page costs, from upstream bytes to the first client answer (issue 17).

Generates two synthetic pages shaped like the real big ones: a PEP 691 JSON page of 15,000 files
(150 releases x 99 platform wheels + an sdist each, sizes, upload times, sha256 and core-metadata
hashes, the same for every wheel of half the releases, like the public index's pydantic-core page)
and a PEP 503 HTML page of 20,000 files (200 releases x 100 wheels, root-relative hrefs with
``%2B`` and a hash fragment, ``data-*`` attributes, like a PyTorch index project page). Then, in a
fresh process with a tree's ``proxy`` on ``sys.path``, times each stage a cold page goes through,
on fresh objects (the render memo lives on them): parse (``parse_project_page``), groups
(``PageEntry.release_groups``), the disk copy (``PageService._save``), the served page rendered as
PEP 691 JSON (``PageViews._render``: the served files' fragments, then their join). Thread CPU time, median of
``--runs`` processes per tree, the trees taking turns.

Run: ``.venv/bin/python benchmarks/bench_page_cpu.py [--runs 7] [--baseline DIR]`` (``DIR``: e.g.
``mkdir /tmp/pc-base && git archive main | tar -x -C /tmp/pc-base``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_JSON_URL = "https://upstream.example/simple/pydantic-core/"
_HTML_URL = "https://upstream.example/whl/torch/"
_STAGES = ("parse", "groups", "save", "served+render")


def _hex(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _platforms(count: int) -> list[str]:
    plats = ["manylinux_2_17_x86_64.manylinux2014_x86_64", "manylinux_2_17_aarch64.manylinux2014_aarch64"]
    plats += ["musllinux_1_1_x86_64", "musllinux_1_1_aarch64", "win_amd64", "win32", "macosx_10_12_x86_64"]
    plats += ["macosx_11_0_arm64", "manylinux_2_17_ppc64le.manylinux2014_ppc64le", "manylinux_2_17_s390x"]
    pythons = ["cp38-cp38", "cp39-cp39", "cp310-cp310", "cp311-cp311", "cp312-cp312", "cp313-cp313"]
    pythons += ["cp313-cp313t", "pp39-pypy39_pp73", "pp310-pypy310_pp73", "cp37-cp37m"]
    return [f"{py}-{plat}" for py in pythons for plat in plats][:count]


def json_page(releases: int = 150, wheels: int = 99) -> bytes:
    files = []
    for r in range(releases):
        version = f"2.{r // 10}.{r % 10}"
        names = [f"pydantic_core-{version}-{tag}.whl" for tag in _platforms(wheels)]
        names.append(f"pydantic_core-{version}.tar.gz")
        for i, name in enumerate(names):
            digest = _hex(name)
            # Half the releases' wheels share one METADATA (nothing to meld), half differ.
            metadata = {"sha256": _hex(version if r % 2 else name, "m")} if name.endswith(".whl") else False
            entry: dict[str, object] = {
                "core-metadata": metadata,
                "data-dist-info-metadata": metadata,
                "filename": name,
                "hashes": {"sha256": digest},
                "requires-python": ">=3.8",
                "size": 1_800_000 + 977 * i + r,
                "upload-time": f"2024-{1 + r % 12:02d}-{1 + i % 28:02d}T13:{i % 60:02d}:00.{i:06d}Z",
                "url": f"https://files.upstream.example/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{name}",
                "yanked": False,
            }
            files.append(entry)
    page = {"meta": {"api-version": "1.3"}, "name": "pydantic-core", "files": files}
    page["versions"] = [f"2.{r // 10}.{r % 10}" for r in range(releases)]
    return json.dumps(page).encode()


def html_page(releases: int = 200, wheels: int = 100) -> bytes:
    lines = ["<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>\n"]
    for r in range(releases):
        cuda = ("cpu", "cu118", "cu121", "cu124", "rocm6.1")[r % 5]
        version = f"2.{r // 25}.{r % 25}+{cuda}"
        for i, tag in enumerate(_platforms(wheels)):
            name = f"torch-{version}-{tag}.whl"
            href = f"/whl/{cuda}/{name.replace('+', '%2B')}#sha256={_hex(name)}"
            attrs = ' data-requires-python="&gt;=3.8"'
            if i % 2:
                attrs += f' data-dist-info-metadata="sha256={_hex(name, "m")}"'
                attrs += f' data-core-metadata="sha256={_hex(name, "m")}"'
            if r % 3:
                attrs += f' data-upload-time="2024-{1 + r % 12:02d}-{1 + i % 28:02d}T13:{i % 60:02d}:00"'
            lines.append(f'    <a href="{href}"{attrs}>{name}</a><br/>\n')
    lines.append("  </body>\n</html>\n")
    return "".join(lines).encode()


_WORKER = r"""
import hashlib, json, sys, tempfile, time
from pathlib import Path

tree, page_file, content_type, url, runs = sys.argv[1:6]
sys.path.insert(0, tree)
from proxy.cache.store import CacheStore, PageKey
from proxy.index.negotiate import JSON_V1
from proxy.index.parse import is_utf8_json, parse_project_page
from proxy.observe import MeldLog, Metrics
from proxy.service.files import FileService
from proxy.service.page_views import PageViews
from proxy.service.pages import PageEntry, PageService
from proxy.service.served_metadata import MetadataService

body = Path(page_file).read_bytes()
times = {"parse": [], "groups": [], "save": [], "served+render": []}
out = None
with tempfile.TemporaryDirectory() as tmp:
    store = CacheStore(Path(tmp))
    store.prepare()
    metrics = Metrics()
    for _ in range(int(runs)):
        pages = PageService(store, offline=False)
        metadata = MetadataService(store, metrics, MeldLog(), offline=False)
        views = PageViews(pages, store, metadata, FileService(store, metrics, offline=False))
        clock = time.thread_time
        t0 = clock()
        page = parse_project_page(body, content_type, url)
        t1 = clock()
        entry = PageEntry(PageKey("pypi", ("big",)), "project", page, None, time.time(), url=url)
        entry.release_groups()
        t2 = clock()
        if is_utf8_json(content_type):
            entry.disk_body = body
        pages._save(entry)
        pages._serve(entry)
        t3 = clock()
        rendered = views._render(views.view_of(entry), True, JSON_V1)
        t4 = clock()
        for stage, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[stage].append(seconds)
        if out is None:
            out = rendered
digest = hashlib.sha256(out).hexdigest()
print(json.dumps({"files": len(page.files), "times": times, "sha256": digest}))
"""


def _measure(tree: Path, page: Path, content_type: str, url: str, runs: int) -> dict[str, object]:
    argv = [sys.executable, "-c", _WORKER, str(tree), str(page), content_type, url, str(runs)]
    done = subprocess.run(argv, stdout=subprocess.PIPE, check=True, cwd=tree)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another tree to measure side by side")
    args = parser.parse_args()
    trees = [("this tree", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    cases = [
        ("PEP 691 JSON", json_page(), "application/vnd.pypi.simple.v1+json", _JSON_URL),
        ("PEP 503 HTML", html_page(), "text/html", _HTML_URL),
    ]
    print("| page | tree | files | " + " | ".join(f"{s} ms" for s in _STAGES) + " | total ms |")
    print("|---|---|---:|" + "---:|" * (len(_STAGES) + 1))
    with tempfile.TemporaryDirectory(prefix="wm-pagecpu-") as tmp:
        for label, body, content_type, url in cases:
            page = Path(tmp) / "page"
            page.write_bytes(body)
            digests, files = set(), 0
            times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in _STAGES} for name, _ in trees}
            # Trees take turns, a process each time (the first run of each is a warm-up, dropped), so
            # a machine that gets busier during the benchmark slows both alike.
            for _ in range(args.runs):
                for name, tree in trees:
                    result = _measure(tree, page, content_type, url, 2)
                    for stage, seconds in result["times"].items():  # type: ignore[attr-defined]
                        times[name][stage].append(seconds[-1])
                    digests.add(result["sha256"])
                    files = result["files"]  # type: ignore[assignment]
            for name, _ in trees:
                medians = [_ms(times[name][s]) for s in _STAGES]
                totals = [sum(times[name][s][i] for s in _STAGES) for i in range(args.runs)]
                cells = " | ".join(f"{m:.1f}" for m in medians)
                print(f"| {label} | {name} | {files} | {cells} | {_ms(totals):.1f} |")
            if len(digests) > 1:
                print(f"\n**{label}: the trees serve different bytes**\n")


if __name__ == "__main__":
    main()
