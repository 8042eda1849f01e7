"""The folders are layers: each imports only the layers below it (README, "Layout").

Read with ``ast`` over ``proxy/``: every ``import`` and ``from ... import`` counts, lazy ones and
``TYPE_CHECKING`` ones included, since each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[2] / "proxy"

# Bottom first. A module may import its own layer and any layer before it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "text",
            "errors",
            "origins",
            "secret_hash",
            "config_values",
            "config_tables",
            "config",
            "default_index",
        }
    ),
    frozenset({"meld"}),
    frozenset({"index"}),
    frozenset({"cache"}),
    frozenset({"observe"}),
    frozenset({"network"}),
    frozenset({"service"}),
    frozenset({"server"}),
    frozenset({"tools"}),
    frozenset({"commands", "cli", "__main__", "__init__"}),
)
# The tool that runs a proxy in process to fetch through it.
MAY_IMPORT_THE_SERVER = {"tools/local_proxy.py"}


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _part(module: str) -> str | None:
    """The top-level part of ``proxy`` that ``module`` lies in (``proxy.server.app`` -> ``server``)."""
    names = module.split(".")
    if names[0] != "proxy":
        return None
    return names[1] if len(names) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def _modules() -> list[Path]:
    return sorted(PROXY.rglob("*.py"))


def _own_part(path: Path) -> str:
    relative = path.relative_to(PROXY)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PROXY)))
def test_each_module_imports_only_its_layer_and_those_below(path: Path) -> None:
    own = _layer(_own_part(path))
    relative = str(path.relative_to(PROXY))
    above = []
    for module in _imports(path):
        part = _part(module)
        if part is None or (relative in MAY_IMPORT_THE_SERVER and part == "server"):
            continue
        if _layer(part) > own:
            above.append(module)
    assert above == [], f"{relative} imports from above its layer"


def test_only_the_edge_imports_starlette() -> None:
    importers = {
        str(path.relative_to(PROXY)).split("/")[0]
        for path in _modules()
        if any(m.split(".")[0] == "starlette" for m in _imports(path))
    }
    assert importers == {"server"}


def test_the_config_imports_neither_the_server_nor_the_network() -> None:
    for path in PROXY.glob("config*.py"):
        parts = {_part(m) for m in _imports(path)}
        assert not parts & {"server", "network", "service"}, path.name


def test_only_the_commands_that_start_a_server_import_it() -> None:
    importers = {
        str(path.relative_to(PROXY))
        for path in _modules()
        if any(_part(m) == "server" for m in _imports(path)) and _own_part(path) != "server"
    }
    assert importers == {"tools/local_proxy.py", "commands/serve.py"}


def test_modules_and_functions_fit_a_screen_or_two() -> None:
    """README, "Layout": no module over 450 lines, no function over 60."""
    long = []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") > 450:
            long.append(f"{path.relative_to(PROXY)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{path.relative_to(PROXY)}:{node.lineno} {node.name}")
    assert long == []
