"""Default upstream discovery (``proxy.default_index``): uv/pip variables, pip config files, pip's default.

Environments are passed explicitly; config files live in ``tmp_path``. Where pip's own loader reads
the process environment, ``monkeypatch`` sets it, and files the machine may have are kept out by
pip's null-device switch or by outranking them.
"""

from __future__ import annotations

import os
import socket
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from proxy import default_index
from proxy.default_index import (
    DiscoveredIndex,
    InvalidIndexURL,
    NoDefaultIndex,
    PipConfigFile,
    UnreadablePipConfig,
    discover_default_index,
    index_url_from_pip_config,
    is_self_reference,
    pip_config_files,
)

NO_FILES = {"PIP_CONFIG_FILE": os.devnull}  # pip's own switch: read no configuration file at all


def pip_says_default() -> str:
    """pip's built-in default read the same way the module reads it, independently of the module."""
    from pip._internal.models.index import PyPI

    return str(PyPI.simple_url)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- environment variables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "url", "source"),
    [
        (
            {"UV_DEFAULT_INDEX": "https://a.example/simple", "UV_INDEX_URL": "https://b.example/simple"},
            "https://a.example/simple",
            "env UV_DEFAULT_INDEX",
        ),
        (
            {"UV_INDEX_URL": "https://b.example/simple", "PIP_INDEX_URL": "https://c.example/simple"},
            "https://b.example/simple",
            "env UV_INDEX_URL",
        ),
        ({"PIP_INDEX_URL": "https://c.example/simple"}, "https://c.example/simple", "env PIP_INDEX_URL"),
        (
            {"UV_DEFAULT_INDEX": "   ", "UV_INDEX_URL": "", "PIP_INDEX_URL": "https://c.example/pypi/"},
            "https://c.example/pypi",
            "env PIP_INDEX_URL",
        ),
        (
            {"UV_DEFAULT_INDEX": "  https://a.example/simple//\n"},
            "https://a.example/simple",
            "env UV_DEFAULT_INDEX",
        ),
        ({"UV_DEFAULT_INDEX": "https://a.example/"}, "https://a.example", "env UV_DEFAULT_INDEX"),
        (
            {"UV_DEFAULT_INDEX": "http://127.0.0.1:3141/root/pypi/+simple/"},
            "http://127.0.0.1:3141/root/pypi/+simple",
            "env UV_DEFAULT_INDEX",
        ),
        (
            {"PIP_INDEX_URL": "https://user:t0ken@mirror.example/simple/"},
            "https://user:t0ken@mirror.example/simple",
            "env PIP_INDEX_URL",
        ),
    ],
)
def test_environment_variables(environ: dict[str, str], url: str, source: str) -> None:
    assert discover_default_index({**NO_FILES, **environ}) == DiscoveredIndex(url, source)


def test_environment_beats_config_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "pip.conf", "[install]\nindex-url = https://file.example/simple\n")
    found = discover_default_index(
        {"PIP_CONFIG_FILE": str(conf), "PIP_INDEX_URL": "https://env.example/simple"}
    )
    assert found == DiscoveredIndex("https://env.example/simple", "env PIP_INDEX_URL")


def test_credentials_kept_but_redacted() -> None:
    found = discover_default_index(
        {**NO_FILES, "UV_DEFAULT_INDEX": "https://__token__:s3cr3t@mirror.example/simple/"}
    )
    assert found.url == "https://__token__:s3cr3t@mirror.example/simple"
    assert found.redacted() == "https://***@mirror.example/simple"
    assert "s3cr3t" not in repr(found)


@pytest.mark.parametrize(
    "value",
    [
        "ftp://mirror.example/simple",
        "file:///srv/simple",
        "mirror.example/simple",
        "/srv/simple",
        "https://",
        "https://mirror.example:notaport/simple",
    ],
)
def test_invalid_url_is_rejected_with_its_source(value: str) -> None:
    with pytest.raises(InvalidIndexURL, match="env UV_INDEX_URL"):
        discover_default_index({**NO_FILES, "UV_INDEX_URL": value})


def test_invalid_url_error_hides_credentials() -> None:
    with pytest.raises(InvalidIndexURL) as caught:
        discover_default_index({**NO_FILES, "PIP_INDEX_URL": "ftp://bob:hunter2@mirror.example/simple"})
    assert "hunter2" not in str(caught.value)


# --- pip's built-in default --------------------------------------------------------------------------


def test_pip_builtin_default() -> None:
    found = discover_default_index(dict(NO_FILES))
    assert found.source == "pip built-in default"
    assert found.url == pip_says_default().rstrip("/")
    assert found.url.startswith("https://")


def test_no_pip_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail exactly as if pip were not installed.
    monkeypatch.setitem(sys.modules, "pip._internal.models.index", None)
    with pytest.raises(NoDefaultIndex, match=r"--route /simple=URL"):
        discover_default_index(dict(NO_FILES))


def test_moved_pip_internals_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    moved = types.ModuleType("pip._internal.models.index")
    moved.PyPI = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pip._internal.models.index", moved)
    with pytest.raises(NoDefaultIndex, match="no simple_url"):
        discover_default_index(dict(NO_FILES))


# --- which value pip's config files give -------------------------------------------------------------

# (kind, file name, body) in pip's order, lowest priority first.
Layout = Sequence[tuple[str, str, str]]


def layout_files(tmp_path: Path, layout: Layout) -> list[PipConfigFile]:
    return [PipConfigFile(kind, write(tmp_path / name, body)) for kind, name, body in layout]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (
            [("global", "g.conf", "[global]\nindex-url = https://g.example/s\n")],
            ("https://g.example/s", "g.conf"),
        ),
        (
            [
                ("global", "g.conf", "[global]\nindex-url = https://g.example/s\n"),
                ("user", "u.conf", "[global]\nindex-url = https://u.example/s\n"),
            ],
            ("https://u.example/s", "u.conf"),
        ),
        (
            [
                ("global", "g.conf", "[global]\nindex-url = https://g.example/s\n"),
                ("user", "u-legacy.conf", "[global]\nindex-url = https://legacy.example/s\n"),
                ("user", "u-new.conf", "[global]\nindex-url = https://new.example/s\n"),
                ("site", "site.conf", "[global]\nindex-url = https://site.example/s\n"),
            ],
            ("https://site.example/s", "site.conf"),
        ),
        (
            [
                ("site", "site.conf", "[global]\nindex-url = https://site.example/s\n"),
                ("env", "env.conf", "[global]\nindex-url = https://env.example/s\n"),
            ],
            ("https://env.example/s", "env.conf"),
        ),
        # [install] beats [global] whichever file each is in, as for `pip install`.
        (
            [
                ("global", "g.conf", "[install]\nindex-url = https://install.example/s\n"),
                ("env", "env.conf", "[global]\nindex-url = https://env.example/s\n"),
            ],
            ("https://install.example/s", "g.conf"),
        ),
        # A blank value does not hide a lower file's value (pip drops empty values).
        (
            [
                ("global", "g.conf", "[global]\nindex-url = https://g.example/s\n"),
                ("env", "env.conf", "[global]\nindex-url =\n"),
            ],
            ("https://g.example/s", "g.conf"),
        ),
        # Option names are normalized as pip normalizes them.
        (
            [("env", "e.conf", "[global]\nindex_url = https://e.example/s\n")],
            ("https://e.example/s", "e.conf"),
        ),
        ([("env", "e.conf", "[GLOBAL]\nindex-url = https://e.example/s\n")], None),
        (
            [("env", "e.conf", "[global]\nIndex-URL = https://e.example/s\n")],
            ("https://e.example/s", "e.conf"),
        ),
        (
            [("env", "e.conf", "[global]\n--index-url = https://e.example/s\n")],
            ("https://e.example/s", "e.conf"),
        ),
        # Other keys and sections are not index URLs.
        ([("env", "e.conf", "[global]\nextra-index-url = https://x.example/s\n")], None),
        ([("env", "e.conf", "[download]\nindex-url = https://x.example/s\n")], None),
        # No interpolation: a '%' in a token is kept as written.
        (
            [("env", "e.conf", "[global]\nindex-url = https://u:a%b@e.example/s\n")],
            ("https://u:a%b@e.example/s", "e.conf"),
        ),
        ([], None),
    ],
)
def test_index_url_from_pip_config(tmp_path: Path, layout: Layout, expected: tuple[str, str] | None) -> None:
    found = index_url_from_pip_config(layout_files(tmp_path, layout))
    got = None if found is None else (found[0], found[1].path.name)
    assert got == expected


def test_missing_files_are_skipped(tmp_path: Path) -> None:
    files = [PipConfigFile("global", tmp_path / "absent.conf"), PipConfigFile("user", tmp_path)]
    assert index_url_from_pip_config(files) is None


@pytest.mark.parametrize("body", ["[global\nindex-url = x\n", "index-url = https://e.example/s\n", "\udcff"])
def test_unreadable_config_names_the_file(tmp_path: Path, body: str) -> None:
    path = tmp_path / "broken.conf"
    path.write_bytes(body.encode("utf-8", "surrogateescape"))
    with pytest.raises(UnreadablePipConfig, match=r"broken\.conf"):
        index_url_from_pip_config([PipConfigFile("env", path)])


# --- which files pip reads ---------------------------------------------------------------------------


def kinds_and_paths(files: Sequence[PipConfigFile]) -> list[tuple[str, str]]:
    return [(f.kind, f.path.as_posix()) for f in files]


def test_linux_file_order(tmp_path: Path) -> None:
    environ = {"HOME": "/home/ada"}
    assert kinds_and_paths(pip_config_files(environ, platform="linux")) == [
        ("global", "/etc/xdg/pip/pip.conf"),
        ("global", "/etc/pip.conf"),
        ("user", "/home/ada/.pip/pip.conf"),
        ("user", "/home/ada/.config/pip/pip.conf"),
        ("site", Path(sys.prefix, "pip.conf").as_posix()),
    ]


def test_linux_xdg_variables() -> None:
    environ = {"HOME": "/home/ada", "XDG_CONFIG_DIRS": "/opt/a:/opt/b", "XDG_CONFIG_HOME": "/cfg"}
    assert kinds_and_paths(pip_config_files(environ, platform="linux"))[:5] == [
        ("global", "/opt/a/pip/pip.conf"),
        ("global", "/opt/b/pip/pip.conf"),
        ("global", "/etc/pip.conf"),
        ("user", "/home/ada/.pip/pip.conf"),
        ("user", "/cfg/pip/pip.conf"),
    ]


def test_existing_pip_config_file_replaces_user_files(tmp_path: Path) -> None:
    conf = write(tmp_path / "pip.conf", "")
    files = pip_config_files({"HOME": "/home/ada", "PIP_CONFIG_FILE": str(conf)}, platform="linux")
    assert [f.kind for f in files] == ["global", "global", "site", "env"]
    assert files[-1].path == conf


def test_missing_pip_config_file_keeps_user_files(tmp_path: Path) -> None:
    conf = tmp_path / "absent.conf"
    files = pip_config_files({"HOME": "/home/ada", "PIP_CONFIG_FILE": str(conf)}, platform="linux")
    assert [f.kind for f in files] == ["global", "global", "user", "user", "site", "env"]


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_null_device_reads_nothing(platform: str) -> None:
    assert pip_config_files({"PIP_CONFIG_FILE": os.devnull}, platform=platform) == ()


def test_windows_file_order() -> None:
    environ = {"USERPROFILE": "/u/ada", "APPDATA": "/u/ada/AppData/Roaming", "PROGRAMDATA": "/pd"}
    assert kinds_and_paths(pip_config_files(environ, platform="win32")) == [
        ("global", "/pd/pip/pip.ini"),
        ("user", "/u/ada/pip/pip.ini"),
        ("user", "/u/ada/AppData/Roaming/pip/pip.ini"),
        ("site", Path(sys.prefix, "pip.ini").as_posix()),
    ]


@pytest.mark.parametrize("has_support_dir", [True, False])
def test_macos_user_dir(tmp_path: Path, has_support_dir: bool) -> None:
    support = tmp_path / "Library" / "Application Support" / "pip"
    if has_support_dir:
        support.mkdir(parents=True)
    files = pip_config_files({"HOME": str(tmp_path)}, platform="darwin")
    expected = support if has_support_dir else tmp_path / ".config" / "pip"
    assert [f.path for f in files if f.kind == "user"][-1] == expected / "pip.conf"


@pytest.mark.skipif(sys.platform != "linux", reason="the fallback is compared with pip on Linux paths")
@pytest.mark.parametrize("pip_config_file", [None, "exists", "absent"])
def test_fallback_lists_what_pip_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pip_config_file: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    if pip_config_file is None:
        monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    else:
        conf = tmp_path / "pip.conf"
        if pip_config_file == "exists":
            write(conf, "")
        monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    from_pip = pip_config_files()  # pip's loader: it sees the process environment
    fallback = pip_config_files(dict(os.environ), platform=sys.platform)  # documented rules
    assert from_pip == fallback
    assert from_pip[0].path == tmp_path / "xdg" / "pip" / "pip.conf"


# --- end to end through the config files -------------------------------------------------------------


def test_pip_loader_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip's loader reads os.environ; [install] in PIP_CONFIG_FILE outranks any file on this machine.
    conf = write(tmp_path / "pip.conf", "[install]\nindex-url = https://corp.example/pypi/simple/\n")
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert discover_default_index() == DiscoveredIndex(
        "https://corp.example/pypi/simple", f"pip config {conf}"
    )


@pytest.fixture
def isolated_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the fallback's global and site locations into ``tmp_path``: no machine file leaks in."""
    root = tmp_path / "machine"
    monkeypatch.setattr(default_index, "_global_dirs", lambda environ, platform: [root / "etc"])
    monkeypatch.setattr(sys, "prefix", str(root / "venv"))
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, None),
        ({"etc/pip.conf": "https://global.example/s"}, ("https://global.example/s", "etc/pip.conf")),
        (
            {
                "etc/pip.conf": "https://global.example/s",
                "home/.config/pip/pip.conf": "https://user.example/s",
            },
            ("https://user.example/s", "home/.config/pip/pip.conf"),
        ),
        (
            {
                "home/.pip/pip.conf": "https://legacy.example/s",
                "home/.config/pip/pip.conf": "https://new.example/s",
            },
            ("https://new.example/s", "home/.config/pip/pip.conf"),
        ),
        (
            {
                "home/.config/pip/pip.conf": "https://user.example/s",
                "venv/pip.conf": "https://site.example/s",
            },
            ("https://site.example/s", "venv/pip.conf"),
        ),
        (
            {"venv/pip.conf": "https://site.example/s", "env.conf": "https://env.example/s"},
            ("https://env.example/s", "env.conf"),
        ),
        # PIP_CONFIG_FILE exists: the user's files are not read at all.
        (
            {"home/.config/pip/pip.conf": "https://user.example/s", "env.conf": ""},
            None,
        ),
    ],
)
def test_fallback_end_to_end(
    isolated_machine: Path, files: dict[str, str], expected: tuple[str, str] | None
) -> None:
    root = isolated_machine
    for name, url in files.items():
        write(root / name, f"[global]\nindex-url = {url}\n" if url else "[global]\n")
    environ: Mapping[str, str] = {"HOME": str(root / "home"), "XDG_CONFIG_HOME": str(root / "home/.config")}
    if "env.conf" in files:
        environ = {**environ, "PIP_CONFIG_FILE": str(root / "env.conf")}
    found = discover_default_index(environ)
    if expected is None:
        assert found.source == "pip built-in default"
    else:
        url, name = expected
        assert found == DiscoveredIndex(url, f"pip config {root / name}")


def test_invalid_url_in_config_names_the_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "pip.conf", "[install]\nindex-url = file:///srv/wheels\n")
    with pytest.raises(InvalidIndexURL, match=r"pip config .*pip\.conf"):
        discover_default_index({"PIP_CONFIG_FILE": str(conf)})


# --- is_self_reference -------------------------------------------------------------------------------

HOSTNAME = socket.gethostname()
FAKE_DNS: Mapping[str, Sequence[str]] = {
    "localhost": ["127.0.0.1", "::1"],
    "mirror.example": ["93.184.215.14"],
    "box.example": ["10.1.2.3"],
    HOSTNAME: ["10.1.2.3", "fd00::3"],
}


def fake_resolve(host: str) -> Sequence[str]:
    if host not in FAKE_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return FAKE_DNS[host]


@pytest.mark.parametrize(
    ("upstream", "host", "port", "expected"),
    [
        ("http://127.0.0.1:8000/simple", "127.0.0.1", 8000, True),
        ("http://localhost:8000/simple/", "127.0.0.1", 8000, True),
        ("http://LOCALHOST:8000/simple/", "localhost", 8000, True),
        ("http://[::1]:8000/simple", "127.0.0.1", 8000, True),
        ("http://127.0.0.2:8000/simple", "127.0.0.1", 8000, True),
        ("http://2130706433:8000/simple", "127.0.0.1", 8000, True),
        ("http://[::ffff:127.0.0.1]:8000/simple", "127.0.0.1", 8000, True),
        ("http://0.0.0.0:8000/simple", "127.0.0.1", 8000, True),
        ("http://127.0.0.1/simple", "127.0.0.1", 80, True),
        ("http://localhost:8000/simple", "0.0.0.0", 8000, True),
        ("http://[::1]:8000/simple", "::", 8000, True),
        ("http://10.1.2.3:8000/simple", "0.0.0.0", 8000, True),
        ("http://box.example:8000/simple", "0.0.0.0", 8000, True),
        (f"http://{HOSTNAME}:8000/simple", "0.0.0.0", 8000, True),
        ("http://10.1.2.3:8000/simple", "10.1.2.3", 8000, True),
        ("http://[fd00::3]:8000/simple", "[::]", 8000, True),
        # Not us: another port, another host, or loopback while we listen elsewhere only.
        ("http://localhost:8001/simple", "127.0.0.1", 8000, False),
        ("https://127.0.0.1/simple", "127.0.0.1", 8000, False),
        ("https://mirror.example/simple", "127.0.0.1", 443, False),
        ("http://mirror.example:8000/simple", "0.0.0.0", 8000, False),
        ("http://10.9.9.9:8000/simple", "0.0.0.0", 8000, False),
        ("http://127.0.0.1:8000/simple", "10.1.2.3", 8000, False),
        ("http://10.1.2.3:8000/simple", "127.0.0.1", 8000, False),
        ("http://nxdomain.example:8000/simple", "127.0.0.1", 8000, False),
        ("http://127.0.0.1:bad/simple", "127.0.0.1", 8000, False),
    ],
)
def test_is_self_reference(upstream: str, host: str, port: int, expected: bool) -> None:
    assert is_self_reference(upstream, host, port, resolver=fake_resolve) is expected


def test_is_self_reference_with_the_real_resolver() -> None:
    # Literal addresses need no lookup at all; the default resolver is only used for names.
    assert is_self_reference("http://127.0.0.1:8000/simple", "127.0.0.1", 8000)
    assert not is_self_reference("http://127.0.0.1:8001/simple", "127.0.0.1", 8000)
