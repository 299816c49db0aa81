"""The import graph, read from the code: the folder tells what may do I/O.

- The pure core (the engine package root, engine/questions/, engine/sms/) imports nothing that
  does I/O and no shell package.
- `dsl` knows nothing of the engine, SMS, Redis, SQL or HTTP.
- Imports flow one way: dsl <- core <- shells <- server.py <- the CLI. Only the CLI imports
  server.py (to start it).
- No package imports back into one that imports it, and no module cycle.

Every import counts, also one inside a function (a lazy import is still a dependency), but
one under `if TYPE_CHECKING:` (annotations only).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Libraries that talk to the outside world (network, databases, processes, the event loop's
# sockets): the core must not import them.
IO_LIBRARIES = {
    "redis", "hiredis", "aiohttp", "twilio", "asyncio", "socket", "ssl", "selectors",
    "subprocess", "http", "urllib", "watchfiles", "sqlalchemy", "alembic", "psycopg",
    "psycopg2", "asyncpg", "aiosqlite", "sqlite3", "aiohttp_jinja2", "jinja2", "selenium",
    "playwright",
}
CORE = ("engine", "engine.questions", "engine.sms")
SHELLS = ("engine.redis", "engine.records", "engine.runtime", "engine.runtime.web", "engine.tools")
MIGRATIONS = ROOT / "engine" / "records" / "migrations"  # Alembic's scripts: data it runs, not modules
CLI = "engine.tools.cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str, modules: set[str]) -> str:
    """The package a module belongs to: itself when it is a package, else its parent."""
    if any(other.startswith(module + ".") for other in modules):
        return module
    return module.rpartition(".")[0] or module


def project_modules() -> dict[str, Path]:
    found = {}
    for top in ("dsl", "engine"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if not path.is_relative_to(MIGRATIONS):
                found[module_name(path)] = path
    found["server"] = ROOT / "server.py"
    return found


def imports_of(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module name a file imports, resolved to absolute names."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return names


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`: an import for annotations only is no
    dependency at run time (and is how a lower module names a type of a higher one)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """module -> the project modules and outside top-level libraries it imports."""
    modules = project_modules()
    known = set(modules)
    edges = {}
    for module, path in modules.items():
        targets = set()
        for name in imports_of(path, module, path.name == "__init__.py"):
            if name in known:
                targets.add(name)
            elif name.split(".")[0] not in ("dsl", "engine", "server"):
                targets.add("lib:" + name.split(".")[0])
        edges[module] = targets - {module}
    return edges


def in_core(module: str, modules) -> bool:
    return package_of(module, modules) in CORE


def test_the_layout_is_what_the_test_expects(graph):
    packages = {package_of(m, graph) for m in graph}
    assert {"dsl", *CORE, *SHELLS} <= packages
    assert packages <= {"dsl", "server", *CORE, *SHELLS}, "a new package: give it its place here"


def test_the_core_imports_no_io_library_and_no_shell(graph):
    offences = []
    for module, targets in graph.items():
        if not in_core(module, graph):
            continue
        for target in targets:
            if target.startswith("lib:") and target[4:] in IO_LIBRARIES:
                offences.append(f"{module} imports {target[4:]}")
            elif not target.startswith("lib:") and target != "dsl" and not target.startswith("dsl.") \
                    and not in_core(target, graph):
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_dsl_knows_nothing_of_the_engine_or_io(graph):
    # `canvass graph --svg` runs Graphviz's dot: a local process, the one outside thing dsl uses.
    allowed = {"subprocess"}
    offences = [f"{module} imports {target}" for module, targets in graph.items()
                if module.split(".")[0] == "dsl" for target in targets
                if not target.startswith(("dsl", "lib:")) or target[4:] in IO_LIBRARIES - allowed]
    assert offences == []


def test_only_the_cli_imports_server(graph):
    importers = sorted(module for module, targets in graph.items() if "server" in targets)
    assert importers == [CLI]


def test_no_package_imports_back_up(graph):
    """The package graph has no cycle (a package importing one that imports it). The core's
    packages are one layer: engine/sms/ holds both what steps use (segments, keywords) and the
    SMS checks that build on compiled questions."""
    def layer(module: str) -> str:
        package = package_of(module, graph)
        return "core" if package in CORE else package

    packages = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if not target.startswith("lib:"):
                source, sink = layer(module), layer(target)
                if source != sink:
                    packages[source].add(sink)
    assert _cycles(packages) == []


def test_no_module_cycle(graph):
    project = {m: {t for t in ts if not t.startswith("lib:")} for m, ts in graph.items()}
    # A package's __init__ that re-exports its modules is not a cycle with them.
    for module in project:
        project[module] = {t for t in project[module] if not module.startswith(t + ".")}
    assert _cycles(project) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One example cycle per strongly connected component with more than one node."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checks_catch_an_offence():
    """The cycle finder and the core rule are not vacuous."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    core_file = ROOT / "engine" / "step.py"
    assert "lib:redis" not in {"lib:" + n.split(".")[0] for n in imports_of(core_file, "engine.step", False)}
    fake = {"engine.step": {"lib:redis"}, "engine.redis.store": set(), "engine.redis": set()}
    assert in_core("engine.step", fake) and not in_core("engine.redis.store", fake)
