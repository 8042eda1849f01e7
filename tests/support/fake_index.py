"""The data a fake simple index (PEP 503 / 691 / 658 / 700) serves: projects and their files.

Pure values, no HTTP: ``tests.support.upstream`` renders them.  Two loaders build indexes from
the fixtures in ``tests/fixtures`` (their README says where each fact comes from):

* ``FakeIndex.from_pytorch_fixture`` — the PyTorch nightly cu126 index of the seed: 29 projects,
  114 tiny wheels built from each entry's Requires-Dist / Provides-Extra / Requires-Python.
* ``FakeIndex.from_pypi_torch_fixture`` — torch 2.1.0's 20 real METADATA files with their real
  file names, sha256, sizes and upload times.  **For resolution only:** the wheel bodies are tiny
  generated wheels (carrying the real METADATA), so their bytes do not match the advertised
  sha256 and size; an installer that downloads them will reject them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from packaging.utils import parse_wheel_filename

from tests.support.wheels import build_wheel, metadata_from_fields

__all__ = [
    "FIXTURES_DIR",
    "FakeFile",
    "FakeIndex",
    "FakeIndexError",
]

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"

# The seed fixture has no upload times; PyTorch pages carry them, so loaders give each file a
# fixed, made-up one: the nightly date for ``devYYYYMMDD`` versions, an older day otherwise.
_DEFAULT_UPLOAD_TIME = "2024-12-01T00:00:00.000000Z"


class FakeIndexError(ValueError):
    """A fixture or a file definition is unusable."""


@dataclass(frozen=True, slots=True)
class FakeFile:
    """One distribution file on the fake index.

    Exactly one of ``content`` (bytes) or ``path`` (a file on disk, streamed) is set.
    ``metadata`` is the PEP 658 ``.metadata`` body, served only when the upstream's ``pep658``
    option is on.  ``hashes`` / ``size`` override what the page advertises (``None``: the real
    sha256 / length of the body; ``{}``: no hash at all).
    """

    filename: str
    content: bytes | None = None
    path: Path | None = None
    metadata: bytes | None = None
    requires_python: str | None = None
    upload_time: str | None = None
    hashes: Mapping[str, str] | None = None
    size: int | None = None
    yanked: bool | str = False

    def __post_init__(self) -> None:
        if (self.content is None) == (self.path is None):
            raise FakeIndexError(f"{self.filename!r}: give exactly one of content or path")
        if "/" in self.filename or not self.filename:
            raise FakeIndexError(f"bad file name {self.filename!r}")

    @property
    def body_size(self) -> int:
        """Length of the bytes actually served."""
        if self.content is not None:
            return len(self.content)
        assert self.path is not None
        return self.path.stat().st_size

    def metadata_sha256(self) -> str | None:
        """sha256 of the ``.metadata`` body, or ``None`` without one."""
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


@dataclass(frozen=True, slots=True)
class FakeIndex:
    """Projects (keyed by their directory name, as the upstream spells it) → files."""

    projects: Mapping[str, tuple[FakeFile, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {name: tuple(files) for name, files in self.projects.items()}
        seen: set[str] = set()
        for files in frozen.values():
            for f in files:
                if f.filename in seen:
                    raise FakeIndexError(f"file {f.filename!r} listed twice")
                seen.add(f.filename)
        object.__setattr__(self, "projects", MappingProxyType(frozen))

    @classmethod
    def from_files(cls, projects: Mapping[str, Iterable[FakeFile]]) -> FakeIndex:
        """An index from ``{"project-dir": [FakeFile, ...]}``."""
        return cls({name: tuple(files) for name, files in projects.items()})

    def find(self, filename: str) -> tuple[str, FakeFile] | None:
        """(project directory, file) of the file called ``filename``, if any."""
        for project, files in self.projects.items():
            for f in files:
                if f.filename == filename:
                    return project, f
        return None

    def file(self, filename: str) -> FakeFile:
        """The file called ``filename``; ``KeyError`` if absent."""
        found = self.find(filename)
        if found is None:
            raise KeyError(filename)
        return found[1]

    @property
    def filenames(self) -> tuple[str, ...]:
        """Every file name, project by project."""
        return tuple(f.filename for files in self.projects.values() for f in files)

    @classmethod
    def from_pytorch_fixture(cls, path: Path | None = None, *, payload_size: int = 64) -> FakeIndex:
        """The seed index (``pytorch-nightly-cu126.json``) with a tiny wheel per entry, no PEP 658."""
        source = path or FIXTURES_DIR / "pytorch-nightly-cu126.json"
        try:
            projects = json.loads(source.read_text(encoding="utf-8"))["projects"]
        except (OSError, ValueError, KeyError) as exc:
            raise FakeIndexError(f"unreadable PyTorch fixture {str(source)!r}") from exc
        out: dict[str, list[FakeFile]] = {}
        for project, entries in projects.items():
            for entry in entries:
                filename = entry["filename"]
                name, version = filename.split("-")[:2]
                metadata = metadata_from_fields(
                    name,
                    version,
                    entry.get("requires_dist") or (),
                    entry.get("provides_extra") or (),
                    entry.get("requires_python"),
                )
                wheel = build_wheel(filename, metadata, payload_size=payload_size)
                out.setdefault(project.lower(), []).append(
                    FakeFile(
                        filename=filename,
                        content=wheel,
                        metadata=metadata,
                        requires_python=entry.get("requires_python"),
                        upload_time=_synthetic_upload_time(filename),
                    )
                )
        return cls.from_files(out)

    @classmethod
    def from_pypi_torch_fixture(cls, directory: Path | None = None) -> FakeIndex:
        """torch 2.1.0: the 20 real METADATA files, real names / hashes / sizes / upload times.

        Resolution only — see the module docstring: the bodies are tiny generated wheels.
        """
        source = directory or FIXTURES_DIR / "pypi-torch-2.1.0"
        try:
            entries = json.loads((source / "files.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FakeIndexError(f"unreadable PyPI torch fixture {str(source)!r}") from exc
        files = []
        for entry in entries:
            filename = entry["filename"]
            try:
                metadata = (source / f"{filename}.metadata").read_bytes()
            except OSError as exc:
                raise FakeIndexError(f"no metadata file for {filename!r}") from exc
            files.append(
                FakeFile(
                    filename=filename,
                    content=build_wheel(filename, metadata),
                    metadata=metadata,
                    requires_python=entry.get("requires-python"),
                    upload_time=entry.get("upload-time"),
                    hashes=dict(entry.get("hashes") or {}),
                    size=entry.get("size"),
                )
            )
        return cls.from_files({"torch": files})


def _synthetic_upload_time(filename: str) -> str:
    version = str(parse_wheel_filename(filename)[1])
    marker = version.find("dev20")
    if marker >= 0:
        day = version[marker + 3 : marker + 11]
        if day.isdigit():
            return f"{day[:4]}-{day[4:6]}-{day[6:]}T08:00:00.000000Z"
    return _DEFAULT_UPLOAD_TIME
