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


# Leaves every layer may import: the nouns, the errors, the settings, where $ROOT is, the log
# format, what the kernel was read to hold (observed), and sha256 without OpenSSL (digests).
DATA = {"model", "errors", "settings", "locations", "logconfig", "observed", "digests"}

# Each folder of src/dockyard and what it may import of dockyard, besides itself and DATA.
# The order is the layers' order, top to bottom: a folder imports only folders below it.
# wire (the HTTP framing and CNI's codes and paths, shared by the daemon and its clients)
# is the bottom leaf: every layer may import it, and it imports nothing of dockyard.
LAYERS: dict[str, set[str]] = {
    "clients": {"wire"},
    # The process is the composition root: it builds the store, the kernel and the engine.
    "daemon": {"engine", "cluster", "drivers", "policy", "kernel", "store", "dns", "images", "wire"},
    "engine": {"cluster", "drivers", "policy", "kernel", "store", "dns", "images", "wire"},
    "dns": {"store", "wire"},
    # Image content: files and HTTP, never the store (engine/images joins the two).
    "images": {"policy", "wire"},
    "drivers": {"kernel", "policy", "wire"},
    # What several hosts share (etcd): below the engine, beside the drivers; pure policy only.
    "cluster": {"policy", "wire"},
    "policy": {"wire"},
    "kernel": {"wire"},
    "store": {"wire"},
    "wire": set(),
}
THIRD_PARTY: dict[str, set[str] | None] = {
    "clients": set(),
    "daemon": set(),
    "policy": set(),
    "drivers": set(),
    # The cluster module speaks etcd's JSON gateway over the stdlib (http.client, ssl).
    "cluster": set(),
    "store": set(),
    "kernel": {"pyroute2", "nftables"},
    "engine": None,
    "dns": None,
    "images": {"zstandard"},
    "wire": set(),
}


def test_the_graph_is_read() -> None:
    assert "dockyard.engine" in GRAPH
    assert "store" in _ours(GRAPH["dockyard.engine"])
    # start spawns (engine/containers/run.py): a name from a submodule resolves to it.
    assert {"store", "kernel.spawn"} <= _ours(GRAPH["dockyard.engine.containers.run"])


def test_every_module_lives_in_a_layer() -> None:
    """A new top-level module must say which layer it belongs to."""
    loose = sorted(
        m
        for m in GRAPH
        if m != "dockyard" and _top(m.removeprefix("dockyard.")) not in {*LAYERS, *DATA, "__main__"}
    )
    assert not loose, f"modules outside the layers' folders: {loose}"


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    _check(_modules(layer), {layer, *LAYERS[layer], *DATA}, allow_third_party=THIRD_PARTY[layer])


def test_the_api_only_parses_and_formats() -> None:
    """No kernel, no SQL: the API calls the engine's use cases."""
    _check(_modules("daemon.api"), {"daemon.api", "engine", "policy", "wire", *DATA}, allow_third_party=set())


def test_the_api_asks_the_engine_never_its_records() -> None:
    """The API reads no store (engine.store and the like) and computes no sandbox key or path of
    $ROOT: what inspect, ps and network ls show comes from the engine (engine/views.py)."""
    assert not {m for m in _modules("daemon.api") if "store" in {_top(n) for n in _ours(GRAPH[m])}}
    bad = []
    for path in sorted((PKG / "daemon" / "api").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {"store", "sandbox_pin", "container_log"}:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno} reads .{node.attr}")
    assert not bad, "\n".join(bad)


def test_the_layers_point_down_only() -> None:
    """The table above is itself a stack: nothing imports a layer listed before it."""
    order = list(LAYERS)
    for i, layer in enumerate(order):
        assert not LAYERS[layer] & set(order[:i]), f"{layer} may import a layer above it"


def test_pure_policy_does_no_io() -> None:
    """ipam, ports and rules compute; they open no file, socket, process or database."""
    io = {"os", "subprocess", "socket", "sqlite3", "shutil", "pathlib", "fcntl", "ctypes", "select"}
    mods = _modules("policy")
    bad = [f"{m} imports {n}" for m in mods for n in GRAPH[m] if _top(n) in io]
    assert not bad, "\n".join(bad)


def test_the_data_leaves_import_no_layer() -> None:
    _check(_modules(*DATA), set(DATA), allow_third_party=set())


def test_the_wire_imports_nothing_of_dockyard() -> None:
    """The framing is the clients' too: no error tree, no settings, only the stdlib."""
    _check(_modules("wire"), {"wire"}, allow_third_party=set())


@pytest.mark.parametrize(
    ("library", "owner"), [("pyroute2", "kernel"), ("nftables", "kernel"), ("sqlite3", "store")]
)
def test_only_one_layer_speaks_each_library(library: str, owner: str) -> None:
    users = sorted(m for m, names in GRAPH.items() if any(_top(n) == library for n in names))
    assert users, f"someone uses {library}"
    strays = [m for m in users if not m.removeprefix("dockyard.").startswith(owner)]
    assert not strays, f"{library} is {owner}'s alone, but {strays} import it"


def test_no_module_imports_a_private_cpython_module() -> None:
    # Modules such as _socket or _json are CPython's internals, free to change in any release;
    # saving socket.py's or json's import is not worth depending on them.
    private = {
        (mod, name)
        for mod, names in GRAPH.items()
        for name in names
        if name.startswith("_") and name != "__future__" and _top(name) in STDLIB
    }
    assert not private, sorted(private)
