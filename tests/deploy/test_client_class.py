"""The tier keeps a ``.metadata`` per client *class* the proxy tells apart (pip or not), never per
``User-Agent`` string, so every uv version and platform shares one entry (deploy/nginx.conf).

The release is tests/e2e/test_sidecar_checkers.py's: the wheel for this machine requires ``numpy``,
the Windows one also ``colorama``, so the meld rewrites this machine's ``.metadata`` and pip is
served the wheel's own (docs/meld-contract.md, "Clients that check metadata against the wheel").
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from packaging.tags import sys_tags
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.server.dispatch import is_sidecar_checker
from tests.deploy.conftest import MakeTier
from tests.deploy.tier import NGINX_CONF, Nginx
from tests.support.fake_index import FakeIndex
from tests.support.serving import ThreadedServer
from tests.support.stack import JSON, wheel
from tests.support.upstream import UpstreamOptions

OPTIONS = UpstreamOptions(format="json", pep658=True, prefix="/simple")
HERE_WHEEL = f"winlib-1.0-{next(iter(sys_tags()))}.whl"
METADATA_PATH = f"/simple/winlib/{HERE_WHEEL}.metadata"
PIP = 'pip/26.3 {"installer":{"name":"pip","version":"26.3"},"python":"3.11.2"}'
UV_LINUX = 'uv/0.9.0 {"installer":{"name":"uv","version":"0.9.0"},"distro":{"name":"Debian"}}'
UV_MAC = 'uv/0.5.11 (5ca1ab1e 2024-12-20) {"installer":{"name":"uv","version":"0.5.11"},"system":"Darwin"}'

# Real clients' User-Agent strings (shortened where only the start matters), and the class each is.
USER_AGENTS = [
    ('pip/23.3.2 {"ci":null,"cpu":"x86_64","implementation":{"name":"CPython"}}', True),
    ('pip/24.0 {"ci":true,"installer":{"name":"pip","version":"24.0"}}', True),
    (PIP, True),
    ("pip/", True),
    (UV_LINUX, False),
    (UV_MAC, False),
    ("uv/0.5.0", False),
    ("poetry/1.8.3 (+https://upstream.example/poetry) python/3.11.2 Linux/6.1.0", False),
    ("pdm/2.19.1 (+https://upstream.example/pdm)", False),
    ("python-requests/2.32.3", False),
    ("curl/8.5.0", False),
    ("", False),
    # The rule is a case-sensitive prefix: near misses are not pip.
    ("Pip/24.0", False),
    ("PIP/24.0", False),
    ("pip 24.0", False),
    (" pip/24.0", False),
    ("pipenv/2024.0.1", False),
    ("wrapper pip/24.0", False),
]


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {
            "winlib": [
                wheel(HERE_WHEEL, ["numpy"]),
                wheel("winlib-1.0-cp311-cp311-win_amd64.whl", ["numpy", "colorama"]),
            ],
        }
    )


def _nginx_client_map() -> list[tuple[str, str]]:
    """The (pattern, class) lines of the shipped map to ``$wheelmeld_client``, default last."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    block = re.search(r"map \$http_user_agent \$wheelmeld_client \{\n(.*?)\n\s*\}", text, re.DOTALL)
    assert block is not None, "deploy/nginx.conf has no map $http_user_agent $wheelmeld_client"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    entries = [re.fullmatch(r'"?(.*?)"?\s+(\w+);', line) for line in lines if line]
    assert all(entries), lines
    return [(m.group(1), m.group(2)) for m in entries if m]


def _nginx_class(user_agent: str) -> str:
    """What nginx's map gives: the first regex (``~`` case-sensitive, ``~*`` not) that matches,
    else ``default`` (the map has no exact-string entries)."""
    found = None
    for pattern, value in _nginx_client_map():
        if pattern == "default":
            found = value
            continue
        assert pattern.startswith("~"), f"exact-string entries are not modelled: {pattern!r}"
        caseless = pattern.startswith("~*")
        regex = pattern.removeprefix("~*") if caseless else pattern.removeprefix("~")
        if re.search(regex, user_agent, re.IGNORECASE if caseless else 0):
            return value
    assert found is not None, "the map has no default"
    return found


@pytest.mark.parametrize(("user_agent", "is_pip"), USER_AGENTS)
def test_the_tier_classes_clients_as_the_proxy_does(user_agent: str, is_pip: bool) -> None:
    assert is_sidecar_checker(user_agent.encode("latin-1")) is is_pip
    assert _nginx_class(user_agent) == ("pip" if is_pip else "other")


def _get(tier_client: httpx.Client, path: str, user_agent: str) -> httpx.Response:
    response = tier_client.get(path, headers={"User-Agent": user_agent})
    assert response.status_code == 200, (response.status_code, response.text)
    return response


def test_two_uv_versions_share_one_stored_metadata(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS)
    first = _get(tier.client, METADATA_PATH, UV_LINUX)
    assert first.headers["x-cache-status"] == "MISS"
    assert first.headers["x-wheelmeld-meld"] == "melded"
    second = _get(tier.client, METADATA_PATH, UV_MAC)
    assert second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content
    # Caches further down (a client's own) still learn that the answer varies.
    assert second.headers["vary"] == "User-Agent"
    assert tier.proxy.requests(METADATA_PATH) == 1


def test_pip_and_uv_get_their_own_answers_through_the_tier(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS)
    for round_ in ("MISS", "HIT"):
        melded = _get(tier.client, METADATA_PATH, UV_LINUX)
        own = _get(tier.client, METADATA_PATH, PIP)
        assert melded.headers["x-cache-status"] == own.headers["x-cache-status"] == round_
        assert melded.headers["x-wheelmeld-meld"] == "melded"
        assert own.headers["x-wheelmeld-meld"].startswith("own")
        assert b"colorama" in melded.content and b"colorama" not in own.content
    assert tier.proxy.requests(METADATA_PATH) == 2


@pytest.mark.parametrize("order", [("pip", "uv"), ("uv", "pip")])
def test_two_user_agent_headers_cannot_store_one_class_answer_under_the_other(
    make_tier: MakeTier, order: tuple[str, str]
) -> None:
    # The proxy reads the last User-Agent and nginx its own choice: the tier sends the replica the
    # one it classed the request by, so whatever is stored is the answer for that class.
    tier = make_tier(_index(), OPTIONS)
    agents = {"pip": PIP, "uv": UV_LINUX}
    tier.client.get(
        METADATA_PATH, headers=[("User-Agent", agents[order[0]]), ("User-Agent", agents[order[1]])]
    )
    assert b"colorama" not in _get(tier.client, METADATA_PATH, PIP).content
    assert b"colorama" in _get(tier.client, METADATA_PATH, UV_LINUX).content


def test_a_page_still_varies_by_accept_whatever_the_client(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS)
    page = "/simple/winlib/"
    json_page = tier.client.get(page, headers={"Accept": JSON, "User-Agent": UV_LINUX})
    html_page = tier.client.get(page, headers={"Accept": "text/html", "User-Agent": UV_LINUX})
    assert json_page.headers["x-cache-status"] == html_page.headers["x-cache-status"] == "MISS"
    assert json_page.headers["content-type"].startswith(JSON)
    assert html_page.headers["content-type"].startswith("text/html")
    again = tier.client.get(page, headers={"Accept": JSON, "User-Agent": PIP})
    assert again.headers["x-cache-status"] == "HIT"
    assert again.content == json_page.content
    assert tier.proxy.requests(page) == 2


def test_a_wheel_is_stored_once_for_every_client(make_tier: MakeTier) -> None:
    tier = make_tier(_index(), OPTIONS)
    path = f"/simple/winlib/{HERE_WHEEL}"
    assert _get(tier.client, path, UV_LINUX).headers["x-cache-status"] == "MISS"
    assert _get(tier.client, path, PIP).headers["x-cache-status"] == "HIT"
    assert tier.proxy.requests(path) == 1


class _VaryingReplica:
    """A replica whose ``.metadata`` answers vary by whatever ``?vary=`` says, counting requests."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.requests += 1
        vary = scope["query_string"].decode().removeprefix("vary=")
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": vary}
        await Response(b"Metadata-Version: 2.1\n", headers=headers)(scope, receive, send)


@pytest.mark.parametrize(
    ("vary", "stored"),
    [
        ("User-Agent", True),
        ("user-agent", True),
        ("Accept-Encoding", False),
        ("*", False),
        ("User-Agent, Accept", False),
    ],
)
def test_a_metadata_varying_by_more_than_the_client_is_not_stored(
    nginx_binary: str, tmp_path: Path, vary: str, stored: bool
) -> None:
    replica = _VaryingReplica()
    server = ThreadedServer(replica, name="replica")
    port = server.start()
    try:
        with Nginx(nginx_binary, [port], tmp_path) as tier, httpx.Client(base_url=tier.url) as client:
            path = f"/simple/x/x-1.0-py3-none-any.whl.metadata?vary={vary}"
            statuses = [client.get(path).headers["x-cache-status"] for _ in range(2)]
    finally:
        server.stop()
    assert statuses == (["MISS", "HIT"] if stored else ["MISS", "MISS"])
    assert replica.requests == (1 if stored else 2)
