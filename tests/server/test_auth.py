"""Access control (``proxy.server.auth``): the hash format, the config, and real HTTP through the proxy.

The e2e tests drive the real uv and pip with credentials written into the index URL, the way a team
member points them at a shared mirror.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from proxy.config import AuthConfig, CliOverrides, Credential, load_config
from proxy.errors import ConfigError
from proxy.secret_hash import SecretHash, SecretHashError, hash_secret
from proxy.server.auth import _parse_authorization, _Presented, _privatize
from tests.e2e.e2ekit import ClientError, Clients
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import index_of, wait_until, wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer

# Cheap parameters keep the tests fast; the format and the code path are the production ones.
_FAST = {"n": 2**10, "r": 8, "p": 1}
ALICE_PASSWORD = "correct horse battery staple"
TOKEN = "tok-3f9a1c27d8e64b0aa5c1"
BOB_PASSWORD = "bob-only-reads-other"
UP = "https://upstream.example/simple"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- the hash format -------------------------------------------------------------------------------


def test_a_hash_matches_its_secret_and_nothing_else() -> None:
    text = hash_secret("s3cret", **_FAST)
    parsed = SecretHash.parse(text)
    assert str(parsed) == text and text.startswith("scrypt$1024$8$1$")
    assert parsed.matches("s3cret")
    assert not parsed.matches("s3cret ") and not parsed.matches("S3cret") and not parsed.matches("")


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_secret("same", **_FAST), hash_secret("same", **_FAST)
    assert first != second
    assert SecretHash.parse(first).matches("same") and SecretHash.parse(second).matches("same")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hunter2", id="plain-text"),
        pytest.param("bcrypt$1$2$3$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", id="other-scheme"),
        pytest.param("scrypt$1000$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", id="n-not-power-of-two"),
        pytest.param("scrypt$1048576$64$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", id="too-much-memory"),
        pytest.param("scrypt$1024$8$1$AA$AAAAAAAAAAAAAAAAAAAAAA", id="salt-too-short"),
        pytest.param("scrypt$x$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", id="n-not-a-number"),
        pytest.param("scrypt$1024$8$1$AAAAAAAAAAA", id="missing-hash"),
    ],
)
def test_bad_hashes_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(SecretHashError) as info:
        SecretHash.parse(text)
    assert "hunter2" not in str(info.value)


def test_empty_secrets_are_not_hashed() -> None:
    with pytest.raises(SecretHashError):
        hash_secret("")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"alice:pw").decode(), _Presented("alice", "pw")),
        ("basic " + base64.b64encode(b"alice:p:w").decode(), _Presented("alice", "p:w")),
        ("Basic " + base64.b64encode(b"__token__:tok").decode(), _Presented("__token__", "tok")),
        ("Basic " + base64.b64encode(b":tok").decode(), _Presented("", "tok")),
        ("Basic " + base64.b64encode("jürgen:pä".encode()).decode(), _Presented("jürgen", "pä")),
        ("Bearer tok", _Presented(None, "tok")),
        ("bearer   tok  ", _Presented(None, "tok")),
        ("Basic " + base64.b64encode(b"alice").decode(), None),
        ("Basic " + base64.b64encode(b"alice:").decode(), None),
        ("Basic !!!not-base64", None),
        ("Bearer", None),
        ("Digest username=alice", None),
        ("", None),
    ],
)
def test_authorization_headers(header: str, expected: _Presented | None) -> None:
    assert _parse_authorization(header) == expected


# -- configuration ---------------------------------------------------------------------------------


def _load(tmp_path: Path, auth: str) -> AuthConfig:
    path = tmp_path / "wheelmeld.toml"
    path.write_text(f'[[routes]]\nprefix = "/simple"\nupstream = "{UP}"\n{auth}', encoding="utf-8")
    return load_config(CliOverrides(config_file=path), environ={}).auth


def test_auth_is_off_by_default(tmp_path: Path) -> None:
    assert not _load(tmp_path, "").enabled


def test_users_and_tokens_are_read_from_the_file(tmp_path: Path) -> None:
    alice, token = hash_secret("a", **_FAST), hash_secret("t", **_FAST)
    auth = _load(
        tmp_path,
        f'[auth]\ncache_ttl = 5\n[[auth.users]]\nname = "alice"\nsecret = "{alice}"\n'
        f'[[auth.tokens]]\nname = "ci"\nsecret = "{token}"\nroutes = ["/simple/"]\n',
    )
    assert auth.enabled and auth.cache_ttl == 5.0
    assert auth.credentials == (
        Credential("user", "alice", alice, ("*",)),
        Credential("token", "ci", token, ("/simple",)),
    )
    assert alice not in repr(auth)  # hashes stay out of reprs and so out of tracebacks


_H = hash_secret("x", n=2, r=1, p=1)


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param('[[auth.users]]\nname = "a"\nsecret = "plain-text"', id="plain-secret"),
        pytest.param('[[auth.users]]\nname = "a"', id="no-secret"),
        pytest.param(f'[[auth.users]]\nsecret = "{_H}"', id="no-name"),
        pytest.param(f'[[auth.users]]\nname = "a:b"\nsecret = "{_H}"', id="colon-in-name"),
        pytest.param(f'[[auth.users]]\nname = "a"\nsecret = "{_H}"\nroutes = []', id="no-routes"),
        pytest.param(f'[[auth.users]]\nname = "a"\nsecret = "{_H}"\nroutes = "/simple"', id="routes-string"),
        pytest.param(
            f'[[auth.users]]\nname = "a"\nsecret = "{_H}"\nroutes = ["/smiple"]', id="unknown-route"
        ),
        pytest.param(f'[[auth.users]]\nname = "a"\nsecret = "{_H}"\nrole = "x"', id="unknown-key"),
        pytest.param(
            f'[[auth.users]]\nname = "a"\nsecret = "{_H}"\n[[auth.users]]\nname = "a"\nsecret = "{_H}"',
            id="two-users-one-name",
        ),
        pytest.param('[auth]\ncache_ttl = "long"', id="ttl-text"),
        pytest.param("[auth]\ncache_ttl = 0", id="ttl-zero"),
        pytest.param('[auth]\nusers = "alice"', id="users-not-array"),
        pytest.param("[auth]\npasswords = 1", id="unknown-auth-key"),
    ],
)
def test_bad_auth_config_is_one_line(tmp_path: Path, auth: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, auth)
    assert str(info.value) and "\n" not in str(info.value) and "plain-text" not in str(info.value)


# -- over HTTP -------------------------------------------------------------------------------------


def _auth() -> AuthConfig:
    return AuthConfig(
        credentials=(
            Credential("user", "alice", hash_secret(ALICE_PASSWORD, **_FAST), ("*",)),
            Credential("token", "ci", hash_secret(TOKEN, **_FAST), ("/simple",)),
            Credential("user", "bob", hash_secret(BOB_PASSWORD, **_FAST), ("/other",)),
        )
    )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    """A proxy with two routes to one upstream (``tiny`` 1.0), access control on."""
    index = index_of({"tiny": [wheel("tiny-1.0-py3-none-any.whl")]})
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(UpstreamServer(index, UpstreamOptions(prefix="/simple")))
        routes = {"/simple": f"{up.url}/simple", "/other": f"{up.url}/simple"}
        config = replace(proxy_config(tmp_path_factory.mktemp("cache"), routes), auth=_auth())
        yield stack.enter_context(ProxyServer(config))


@pytest.fixture
def client(guarded: ProxyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=20.0) as c:
        yield c


@pytest.mark.parametrize("path", ["/simple/tiny/", "/simple/", "/", "/metrics", "/-/release/simple/tiny/1.0"])
def test_no_credentials_is_401_with_a_basic_challenge(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="wheelmeld"')
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_basic("alice", "wrong"), id="wrong-password"),
        pytest.param(_basic("mallory", ALICE_PASSWORD), id="unknown-user"),
        pytest.param(_basic("bob", ALICE_PASSWORD), id="someone-elses-password"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {ALICE_PASSWORD}"}, id="password-as-token"),
        pytest.param({"Authorization": "Basic ???"}, id="garbage"),
    ],
)
def test_wrong_credentials_are_401(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.get("/simple/tiny/", headers=headers)
    assert response.status_code == 401 and "www-authenticate" in response.headers
    assert ALICE_PASSWORD not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_basic("alice", ALICE_PASSWORD), id="user"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, id="bearer-token"),
        pytest.param(_basic("__token__", TOKEN), id="token-as-basic-password"),
        pytest.param(_basic("anyone", TOKEN), id="token-with-any-user-name"),
    ],
)
def test_right_credentials_are_200(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.get("/simple/tiny/", headers=headers)
    assert response.status_code == 200
    assert "tiny-1.0-py3-none-any.whl" in response.text


def test_healthz_stays_open(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200


def test_read_access_is_per_route(client: httpx.Client) -> None:
    bob, ci = _basic("bob", BOB_PASSWORD), {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/other/tiny/", headers=bob).status_code == 200
    assert client.get("/simple/tiny/", headers=bob).status_code == 403
    assert client.get("/simple/tiny/tiny-1.0-py3-none-any.whl", headers=bob).status_code == 403
    assert client.get("/other/tiny/", headers=ci).status_code == 403
    alice = _basic("alice", ALICE_PASSWORD)
    assert {client.get(p, headers=alice).status_code for p in ("/simple/tiny/", "/other/tiny/")} == {200}


def test_the_status_page_shows_only_readable_routes(client: httpx.Client) -> None:
    mine = client.get("/", headers=_basic("bob", BOB_PASSWORD))
    assert mine.status_code == 200
    assert (
        "/other/" in mine.text
        and "/simple/" not in mine.text
        and "signed in as <code>bob</code>" in mine.text
    )
    everything = client.get("/", headers=_basic("alice", ALICE_PASSWORD)).text
    assert "/other/" in everything and "/simple/" in everything
    assert client.get("/metrics", headers=_basic("bob", BOB_PASSWORD)).status_code == 200


def test_files_download_with_credentials_and_stay_out_of_shared_caches(client: httpx.Client) -> None:
    for _ in range(2):  # a miss streamed from upstream, then a hit from the cache
        response = client.get(
            "/simple/tiny/tiny-1.0-py3-none-any.whl", headers=_basic("alice", ALICE_PASSWORD)
        )
        assert response.status_code == 200 and response.content[:2] == b"PK"
        directives = {d.strip() for d in response.headers.get("cache-control", "").split(",")}
        assert "public" not in directives and "private" in directives


def test_pages_with_a_plain_max_age_are_marked_private(client: httpx.Client) -> None:
    # A tier such as nginx caches a plain max-age whatever the request's Authorization said.
    response = client.get("/simple/tiny/", headers=_basic("alice", ALICE_PASSWORD))
    assert response.status_code == 200
    directives = {d.strip() for d in response.headers.get("cache-control", "").split(",")}
    assert "private" in directives and "public" not in directives


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"public, max-age=31536000, immutable", b"private, max-age=31536000, immutable"),
        (b"max-age=600", b"private, max-age=600"),
        (b"max-age=0, must-revalidate", b"private, max-age=0, must-revalidate"),
        (b"PUBLIC", b"private"),
        (b"private, max-age=60", b"private, max-age=60"),
        (b"no-store", b"no-store"),
    ],
)
def test_cacheable_answers_become_private(value: bytes, expected: bytes) -> None:
    assert _privatize(value) == expected


def test_one_verification_serves_many_requests(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = SecretHash.matches

    def counting(self: SecretHash, secret: str) -> bool:
        calls.append(1)
        return original(self, secret)

    monkeypatch.setattr(SecretHash, "matches", counting)
    headers = _basic("alice", "a-fresh-wrong-password")  # nothing cached for it yet
    for _ in range(30):
        assert client.get("/simple/", headers=headers).status_code == 401
    # One verification: alice's hash, then each token's; the rest came from memory.
    assert 1 <= len(calls) <= 2


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _access_log() -> Iterator[list[str]]:
    """The proxy's access-log lines written inside the block (the test proxy keeps it quiet)."""
    logger, handler = logging.getLogger("wheelmeld.access"), _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


def test_the_access_log_shows_no_secret(client: httpx.Client) -> None:
    with _access_log() as lines:
        client.get("/simple/tiny/", headers=_basic("alice", ALICE_PASSWORD))
        client.get(f"/simple/tiny/?token={TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"})
        client.get("/simple/tiny/", headers=_basic("alice", "wrong-" + ALICE_PASSWORD))
        wait_until(lambda: len(lines) >= 3, "three access-log lines")
    assert len(lines) == 3 and "status=401" in lines[2]
    encoded = base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode()
    for line in lines:
        assert ALICE_PASSWORD not in line and TOKEN not in line and encoded not in line


# -- uv and pip, with credentials in the index URL -------------------------------------------------


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    (tmp_path / "home").mkdir()
    return Clients(home=tmp_path / "home", uv_cache=tmp_path / "uv-cache")


def _index(proxy: ProxyServer, userinfo: str = "") -> str:
    return f"http://{userinfo}{'@' if userinfo else ''}127.0.0.1:{proxy.port}/simple"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "userinfo", [f"alice:{ALICE_PASSWORD.replace(' ', '%20')}", f"__token__:{TOKEN}"], ids=["user", "token"]
)
def test_uv_installs_with_credentials_in_the_index_url(
    guarded: ProxyServer, clients: Clients, tmp_path: Path, userinfo: str
) -> None:
    python = clients.new_venv(tmp_path / "venv")
    clients.uv_run(
        "pip", "install", "--python", str(python), "--index-url", _index(guarded, userinfo), "tiny"
    )
    listing = clients.uv_run("pip", "list", "--python", str(python)).stdout
    assert "tiny" in listing
    with _access_log() as lines, pytest.raises(ClientError, match="401"):
        clients.uv_run(
            "pip", "install", "--python", str(python), "--reinstall", "--no-cache",
            "--index-url", _index(guarded), "tiny",
        )  # fmt: skip
    assert "status=401" in "\n".join(lines)


@pytest.mark.e2e
def test_pip_installs_with_credentials_in_the_index_url(
    guarded: ProxyServer, clients: Clients, tmp_path: Path
) -> None:
    python = clients.new_venv(tmp_path / "venv")
    index = _index(guarded, f"__token__:{TOKEN}")
    clients.pip("--python", str(python), "install", "--index-url", index, "tiny")
    listing = clients.pip("--python", str(python), "list").stdout
    assert "tiny" in listing
    # pip reports a 401 page as "no versions"; the proxy's access log says why.
    with _access_log() as lines, pytest.raises(ClientError, match="No matching distribution"):
        clients.pip(
            "--python", str(python), "install", "--force-reinstall", "--index-url", _index(guarded), "tiny"
        )
    assert "path=/simple/tiny/ status=401" in "\n".join(lines)


def test_the_example_auth_section_loads_once_uncommented(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text(encoding="utf-8")
    section = example[example.index("# [auth]") :]
    lines = [line[2:] for line in section.splitlines() if line.startswith("# ")]
    text = "\n".join(lines).replace("scrypt$16384$8$1$<salt>$<hash>", hash_secret("x", **_FAST))
    auth = _load(tmp_path, text)
    assert [(c.kind, c.name, c.routes) for c in auth.credentials] == [
        ("user", "alice", ("*",)),
        ("token", "ci", ("/simple",)),
    ]


def test_answers_sent_again_are_checked_and_kept_private_every_time(client: httpx.Client) -> None:
    # Warm pages and metadata are sent again from ready answers (proxy.server.ready), which sit
    # below access control: every repeat is still checked, and still marked private.
    alice, bob = _basic("alice", ALICE_PASSWORD), _basic("bob", BOB_PASSWORD)
    for path in ("/simple/tiny/", "/simple/tiny/tiny-1.0-py3-none-any.whl.metadata"):
        for _ in range(3):
            response = client.get(path, headers=alice)
            assert response.status_code == 200
            directives = {d.strip() for d in response.headers.get("cache-control", "").split(",")}
            assert "public" not in directives
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bob).status_code == 403


# -- timing ------------------------------------------------------------------------------------------

# Costly enough that two derivations stand well above a request's own time on a loaded machine.
_TIMED = {"n": 2**13, "r": 8, "p": 1}


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    index = index_of({"tiny": [wheel("tiny-1.0-py3-none-any.whl")]})
    auth = AuthConfig(
        credentials=(
            Credential("user", "alice", hash_secret(ALICE_PASSWORD, **_TIMED)),
            Credential("token", "ci", hash_secret(TOKEN, **_TIMED)),
        )
    )
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(UpstreamServer(index, UpstreamOptions(prefix="/simple")))
        config = replace(
            proxy_config(tmp_path_factory.mktemp("cache"), {"/simple": f"{up.url}/simple"}), auth=auth
        )
        proxy = stack.enter_context(ProxyServer(config))
        yield stack.enter_context(httpx.Client(base_url=proxy.url, timeout=20.0))


def test_wrong_credentials_cost_the_same_whoever_they_name(timed: httpx.Client) -> None:
    # Known user, wrong password: once two derivations against an unknown user's one (76 against
    # 112 ms median, enough to enumerate names). Each try a fresh secret: no remembered verdict.
    kinds = {
        "known user": lambda i: _basic("alice", f"wrong-{i}"),
        "unknown user": lambda i: _basic(f"mallory-{i}", f"wrong-{i}"),
        "bearer": lambda i: {"Authorization": f"Bearer wrong-{i}"},
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(9):
        for kind, headers in kinds.items():
            started = time.perf_counter()
            assert timed.get("/simple/", headers=headers(i)).status_code == 401
            times[kind].append(time.perf_counter() - started)
    known = statistics.median(times["known user"])
    for kind in ("unknown user", "bearer"):
        ratio = statistics.median(times[kind]) / known
        assert 0.7 <= ratio <= 1.4, (kind, ratio, times)
