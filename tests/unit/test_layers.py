"""The direction of imports (style.md 3.2), checked over the source's import graph.

Every `import` and `from ... import` in src/dockyard, at any depth (a lazy
import inside a function counts too), is read with ast and resolved to the
module it names. The rules are the design's layers: clients stay thin, the
API only parses and formats, drivers never touch the store, the store never
touches the kernel, pure logic does no I/O, and only kernel/ speaks netlink
or nftables and only the store speaks SQL.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "dockyard"
STDLIB = set(sys.stdlib_module_names)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The modules a file imports, as dotted names (dockyard's resolved to the submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # `from dockyard import ipam` names a module; `from dockyard.x import f` a name in x.
                is_module = (SRC / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    SRC / Path(*candidate.split(".")) / "__init__.py"
                ).exists()
                found.add(candidate if is_module else base)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def _ours(names: set[str]) -> set[str]:
    return {n.removeprefix("dockyard.") for n in names if n.startswith("dockyard.")}


def _top(name: str) -> str:
    return name.split(".")[0]


def _modules(*prefixes: str) -> list[str]:
    out = []
    for mod in GRAPH:
        short = mod.removeprefix("dockyard.")
        if any(short == p or short.startswith(p + ".") for p in prefixes):
            out.append(mod)
    return out


def _check(modules: list[str], allowed_ours: set[str], allow_third_party: set[str] | None = None) -> None:
    assert modules, "the rule names modules that exist"
    bad = []
    for mod in modules:
        for name in GRAPH[mod]:
            if name.startswith("dockyard"):
                short = name.removeprefix("dockyard.") if name != "dockyard" else ""
                if short and not any(short == a or short.startswith(a + ".") for a in allowed_ours):
                    bad.append(f"{mod} imports {name}")
            elif (
                _top(name) not in STDLIB
                and _top(name) != "__future__"
                and allow_third_party is not None
                and _top(name) not in allow_third_party
            ):
                bad.append(f"{mod} imports {name}")
    assert not bad, "\n".join(sorted(bad))


DATA = {"model", "errors", "settings", "locations", "names"}


def test_the_graph_is_read() -> None:
    assert "dockyard.engine" in GRAPH
    assert "store" in _ours(GRAPH["dockyard.engine"])
    # start spawns (container_run.py, mixed into the Engine): a name from a submodule resolves to it.
    assert {"store", "kernel.spawn"} <= _ours(GRAPH["dockyard.container_run"])


def test_clients_import_only_the_stdlib_and_the_thin_modules() -> None:
    """`dockyard` and `dockyard-cni` pay every import at every call."""
    thin = {"cli", "client", "errors", "locations", "cni_results"}
    _check(_modules("cli", "cni", "cni_results", "client"), thin, allow_third_party=set())


def test_the_api_only_parses_and_formats() -> None:
    """No kernel, no SQL: the API calls the engine's use cases."""
    allowed = {
        "api",
        "engine",
        "reconcile",
        "networks",
        "attachments",
        "attachment_checks",
        "attachment_networks",
        "ports",
        "ipam",
        *DATA,
    }
    _check(_modules("api"), allowed, allow_third_party=set())


def test_drivers_use_the_kernel_and_rules_never_the_store() -> None:
    _check(_modules("drivers"), {"drivers", "kernel", "rules", "ipam", *DATA}, allow_third_party=set())


def test_the_store_never_touches_the_kernel() -> None:
    _check(_modules("store"), {"store", *DATA}, allow_third_party=set())


def test_pure_logic_does_no_io() -> None:
    """ipam, ports and rules compute; they open no file, socket, process or database."""
    io = {"os", "subprocess", "socket", "sqlite3", "shutil", "pathlib", "fcntl", "ctypes", "select"}
    mods = _modules("ipam", "ports", "rules")
    _check(mods, {"ipam", "ports", "rules", *DATA}, allow_third_party=set())
    bad = [f"{m} imports {n}" for m in mods for n in GRAPH[m] if _top(n) in io]
    assert not bad, "\n".join(bad)


def test_the_kernel_layer_imports_nothing_above_it() -> None:
    _check(_modules("kernel", "shim"), {"kernel", "shim", *DATA}, allow_third_party={"pyroute2", "nftables"})


@pytest.mark.parametrize(
    ("library", "owner"), [("pyroute2", "kernel"), ("nftables", "kernel"), ("sqlite3", "store")]
)
def test_only_one_layer_speaks_each_library(library: str, owner: str) -> None:
    users = sorted(m for m, names in GRAPH.items() if any(_top(n) == library for n in names))
    assert users, f"someone uses {library}"
    strays = [m for m in users if not m.removeprefix("dockyard.").startswith(owner)]
    assert not strays, f"{library} is {owner}'s alone, but {strays} import it"
