"""What a file name on an index page is: a wheel, a PEP 825 variant wheel, an sdist, a release's
``variants.json``, or something the proxy does not understand (served, never dropped).

``packaging`` parses wheel and sdist names; PEP 825 (a draft) only adds an optional variant label
after the platform tag, ``{name}-{version}(-{build})?-{py}-{abi}-{platform}(-{label})?.whl``, with
the label matching ``[0-9a-z_.]{1,16}``, and names a release's index-level variant metadata
``{name}-{version}-variants.json`` with name and version normalized as in wheel names. A name that
``packaging`` reads as an ordinary wheel is one: the label is only tried when that fails.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import (
    BuildTag,
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

__all__ = [
    "FileKind",
    "FileName",
    "VariantWheelName",
    "parse_file_name",
    "parse_variant_wheel_filename",
    "wheel_identity",
]

_VARIANT_LABEL = re.compile(r"[0-9a-z_.]{1,16}")
_VARIANTS_JSON = "-variants.json"


class FileKind(enum.Enum):
    WHEEL = "wheel"
    VARIANT_WHEEL = "variant wheel"  # PEP 825
    SDIST = "sdist"
    VARIANTS_JSON = "variants.json"  # PEP 825 index-level variant metadata: not immutable
    OTHER = "other"  # legacy formats, non-conforming names: passed through as they are


@dataclass(frozen=True, slots=True)
class FileName:
    kind: FileKind
    name: NormalizedName | None = None  # None for OTHER
    version: Version | None = None
    variant: str | None = None  # the PEP 825 label of a variant wheel


@dataclass(frozen=True, slots=True)
class VariantWheelName:
    name: NormalizedName
    version: Version
    build: BuildTag
    tags: frozenset[Tag]
    label: str


def parse_variant_wheel_filename(filename: str) -> VariantWheelName:
    """A PEP 825 variant wheel's parts; ``InvalidWheelFilename`` for any other name (an ordinary
    wheel included: ``packaging`` reads those, and a name it reads is never a variant)."""
    if not filename.endswith(".whl"):
        raise InvalidWheelFilename(f"not a wheel file name: {filename!r}")
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename:
        pass
    else:
        raise InvalidWheelFilename(f"an ordinary wheel, not a variant: {filename!r}")
    stem, dash, label = filename[: -len(".whl")].rpartition("-")
    if not dash or not _VARIANT_LABEL.fullmatch(label):
        raise InvalidWheelFilename(f"no PEP 825 variant label in {filename!r}")
    name, version, build, tags = parse_wheel_filename(stem + ".whl")
    return VariantWheelName(name, version, build, tags, label)


def _variants_json(filename: str) -> FileName | None:
    if not filename.endswith(_VARIANTS_JSON):
        return None
    name, dash, version = filename[: -len(_VARIANTS_JSON)].rpartition("-")
    if not dash or not name:
        return None
    try:
        return FileName(FileKind.VARIANTS_JSON, canonicalize_name(name), Version(version))
    except InvalidVersion:
        return None


def parse_file_name(filename: str) -> FileName:
    """Classify one file name of a page; never raises."""
    if filename.endswith(".whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
            return FileName(FileKind.WHEEL, name, version)
        except InvalidWheelFilename:
            pass
        try:
            variant = parse_variant_wheel_filename(filename)
        except InvalidWheelFilename:
            return FileName(FileKind.OTHER)
        return FileName(FileKind.VARIANT_WHEEL, variant.name, variant.version, variant.label)
    found = _variants_json(filename)
    if found is not None:
        return found
    try:
        name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return FileName(FileKind.OTHER)
    return FileName(FileKind.SDIST, name, version)


def wheel_identity(filename: str) -> tuple[NormalizedName, Version] | None:
    """Project and version of a wheel, variant or not (its ``.dist-info`` is named by them)."""
    parsed = parse_file_name(filename)
    if parsed.kind in (FileKind.WHEEL, FileKind.VARIANT_WHEEL):
        assert parsed.name is not None and parsed.version is not None
        return parsed.name, parsed.version
    return None
