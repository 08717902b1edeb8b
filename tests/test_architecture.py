"""The import graph of the package, read from the source text: no cycles, no stale top-level names.

Nothing of the project is imported here (a cycle or a broken module must not stop the check that names it):
every `.py` file of the packages pyproject declares is parsed with `ast`, and each `import` (module level,
inside functions, under `TYPE_CHECKING`) is resolved to a project module. Tarjan's algorithm finds the
strongly connected components; each cycle is reported as `a -> b -> a` with the file and line of every hop.
The folder -> package mapping comes from pyproject's [tool.setuptools] packages and package-dir, so the test
reads today's `service`/`dashboard` layout and the single `facefleet` package alike.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

# The top-level import names the project used before the single `facefleet` package. Once pyproject stops
# declaring one of them, nothing in the repository may still refer to it.
LEGACY_TOP_LEVEL = ("service", "dashboard")
# Where a stale `service.x` / `dashboard.x` reference could hide: the code, its tests and tools, the roles
# that run it, the docs that describe it. Folders of build output, caches and data are not read.
SCANNED = ("service", "dashboard", "tests", "bench", "scripts", "roles", "docs", "ansible", ".ci", "constraints")
SKIPPED_DIRS = {".git", ".venv", ".cache", "__pycache__", "build", "dist", "test-artifacts", "fleet-report"}
TEXT_SUFFIXES = {"", ".py", ".sh", ".md", ".yml", ".yaml", ".j2", ".cfg", ".ini", ".toml", ".txt", ".conf", ".env"}
# `service.yml`, `dashboard.env`, ...: file names, not modules.
FILE_EXTENSIONS = {
    "yml", "yaml", "env", "j2", "md", "py", "txt", "json", "sh", "html", "css", "js", "png", "jpg", "toml", "log",
    "conf", "cfg", "ini", "service", "pid", "sock", "db", "sqlite", "csv", "svg", "zip", "tar", "gz", "sqlite3",
}  # fmt: skip


@dataclass(frozen=True)
class Import:
    """One import statement's target, with where it is written."""

    target: str
    path: Path
    line: int


@dataclass
class Project:
    """Every module of the declared packages, by dotted name, and the imports each one makes."""

    files: dict[str, Path] = field(default_factory=dict)
    packages: set[str] = field(default_factory=set)
    imports: dict[str, list[Import]] = field(default_factory=dict)


def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def declared_packages() -> dict[str, Path]:
    """Package name -> folder, as setuptools maps them (the longest package-dir prefix wins)."""
    setuptools = pyproject()["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools.get("package-dir", {})
    folders = {}
    for package in setuptools["packages"]:
        prefixes = [key for key in package_dir if key in ("", package) or package.startswith(key + ".")]
        key = max(prefixes, key=len, default=None)
        if key is None:
            folders[package] = ROOT / package.replace(".", "/")
            continue
        rest = package[len(key) :].lstrip(".")
        folders[package] = ROOT / package_dir[key] / rest.replace(".", "/")
    return folders


def top_level_names() -> set[str]:
    return {package.split(".")[0] for package in declared_packages()}


def modules() -> tuple[dict[str, Path], set[str]]:
    """Module name -> file for every `.py` under the declared package folders; and the package names.

    A folder is walked with the most specific package that maps it, so `facefleet` = service/ and
    `facefleet.dashboard` = dashboard/ both give their files one name each."""
    files: dict[Path, str] = {}
    packages = set()
    for package, folder in sorted(declared_packages().items(), key=lambda item: len(item[0])):
        for path in folder.rglob("*.py"):
            if SKIPPED_DIRS.intersection(path.relative_to(folder).parts):
                continue
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
                packages.add(".".join(parts))
            files[path] = ".".join(parts)
    return {name: path for path, name in files.items()}, packages


def _module_of(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a project module (`a.b.C` -> `a.b`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _targets(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement brings in, relative ones made absolute."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base]) if base else ".".join(package)
        for alias in node.names:
            # `from a import b` imports the module a.b when there is one, else a name of a
            yield f"{base}.{alias.name}" if alias.name != "*" else base


@functools.cache  # parsed once per session: the tests below only read it
def project() -> Project:
    files, packages = modules()
    result = Project(files=files, packages=packages)
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = []
        for node in ast.walk(tree):
            for name in _targets(node, module, module in packages):
                target = _module_of(name, files)
                if target is not None and target != module:
                    found.append(Import(target, path, node.lineno))
        result.imports[module] = found
    return result


def graph(proj: Project) -> dict[str, dict[str, Import]]:
    """module -> {imported module: its first import statement}."""
    edges: dict[str, dict[str, Import]] = {}
    for module, found in proj.imports.items():
        edges[module] = {}
        for item in sorted(found, key=lambda item: item.line):
            edges[module].setdefault(item.target, item)
    return edges


def strongly_connected(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a deep import chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_path(edges: dict[str, dict[str, Import]], start: str, goal: str, within: set[str]) -> list[str]:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for child in sorted(edges[node]):
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{goal} is not reachable from {start} inside its component")


def normalise(cycle: list[str]) -> tuple[str, ...]:
    """A cycle (without the repeated first module) rotated to start at its smallest name."""
    first = cycle.index(min(cycle))
    return tuple(cycle[first:] + cycle[:first])


def cycles(edges: dict[str, dict[str, Import]]) -> set[tuple[str, ...]]:
    """For every import edge inside a strongly connected component, the shortest cycle through it:
    together they show every import that keeps the component tied."""
    found = set()
    for component in strongly_connected(edges):
        members = set(component)
        if len(members) < 2:
            continue
        for module in component:
            for child in edges[module]:
                if child in members:
                    found.add(normalise([module, *_shortest_path(edges, child, module, members)[:-1]]))
    return found


def spell(cycle: tuple[str, ...]) -> str:
    return " -> ".join([*cycle, cycle[0]])


def explain(cycle: tuple[str, ...], edges: dict[str, dict[str, Import]]) -> str:
    hops = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
    lines = [spell(cycle)]
    for module, child in hops:
        where = edges[module][child]
        lines.append(f"    {where.path.relative_to(ROOT)}:{where.line}: {module} imports {child}")
    return "\n".join(lines)


def test_every_module_parses_and_the_mapping_finds_the_packages() -> None:
    proj = project()
    assert proj.files, f"no modules found under the packages of {ROOT / 'pyproject.toml'}"
    for package, folder in declared_packages().items():
        assert folder.is_dir(), f"pyproject declares package {package} in {folder}, which does not exist"
    assert sum(map(len, proj.imports.values())) > 0


# The rooms of the `facefleet` package (docs/architecture.md, "What imports what"), lowest first. A module may
# import its own room and any room of a lower rank; two rooms of one rank know nothing of each other.
ROOM_RANKS = {
    "errors": 0,  # shared: errors with a stable code
    "timing": 0,  # shared: per-stage wall time
    "": 0,  # facefleet/__init__.py: the version
    "settings": 1,  # shared: typed settings, read once
    "models": 2,  # model files: manifest, pull, verify, prepare, synth, thresholds
    "engine": 3,  # running models: decode, detect, align, embed, the runner chain
    "galleries": 4,  # the gallery store, coarse search, bundles
    "ops": 4,  # metrics, exporter, Jetson telemetry, clients and load tools
    "streams": 4,  # camera streams: sources, tracking, crop choice, events, delivery (reports via Protocols)
    "app": 5,  # use cases, no Flask
    "contract": 5,  # the HTTP contract: typed request and answer models, OpenAPI
    "api": 6,  # adapter: the HTTP service
    "dashboard": 6,  # adapter: the fleet dashboard (reaches appliances over HTTP)
    "cli": 7,  # adapter: the `facefleet` command
    "__main__": 8,
}
# The one place an adapter starts another: `facefleet serve` and `facefleet dashboard` run those apps under gunicorn.
PROCESS_STARTS = {
    ("facefleet.cli.gunicorn_conf", "facefleet.api"),
    ("facefleet.cli", "facefleet.dashboard.gunicorn_conf"),
}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_room_imports_only_the_rooms_below_it() -> None:
    edges = graph(project())
    unknown = sorted({room_of(m) for m in edges} - set(ROOM_RANKS))
    assert not unknown, f"rooms without a rank in ROOM_RANKS (add them, and to docs/architecture.md): {unknown}"
    wrong = []
    for module, targets in edges.items():
        for target, where in targets.items():
            here, there = room_of(module), room_of(target)
            if here == there or (ROOM_RANKS[there] < ROOM_RANKS[here] and there not in ("api", "dashboard")):
                continue
            if (module, target) in PROCESS_STARTS:
                continue
            wrong.append(f"{where.path.relative_to(ROOT)}:{where.line}: {module} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the rooms' order (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = graph(project())
    found = sorted(cycles(edges))
    assert not found, "import cycles (break each at one of the lines shown):\n" + "\n".join(
        explain(cycle, edges) for cycle in found
    )


def test_the_cycle_finder_finds_a_cycle_and_names_its_lines() -> None:
    """The finder itself, on a made-up graph: one three-module cycle, one two-module cycle and a tail."""

    def edge(target: str, line: int) -> Import:
        return Import(target, ROOT / "x.py", line)

    edges = {
        "p.a": {"p.b": edge("p.b", 1)},
        "p.b": {"p.c": edge("p.c", 2)},
        "p.c": {"p.a": edge("p.a", 3), "p.d": edge("p.d", 4)},
        "p.d": {"p.e": edge("p.e", 5)},
        "p.e": {"p.d": edge("p.d", 6)},
        "p.f": {"p.a": edge("p.a", 7)},
    }
    assert sorted(map(spell, cycles(edges))) == ["p.a -> p.b -> p.c -> p.a", "p.d -> p.e -> p.d"]
    assert "x.py:6: p.e imports p.d" in explain(("p.d", "p.e"), edges)


def test_relative_and_absolute_imports_resolve_to_modules() -> None:
    files = {"pkg": Path("i"), "pkg.sub": Path("s"), "pkg.sub.mod": Path("m"), "pkg.other": Path("o")}

    def resolve(source: str, module: str, is_package: bool = False) -> list[str | None]:
        node = ast.parse(source).body[0]
        return [_module_of(name, files) for name in _targets(node, module, is_package)]

    assert resolve("from .other import thing", "pkg.sub") == ["pkg.other"]
    assert resolve("from . import mod", "pkg.sub", is_package=True) == ["pkg.sub.mod"]
    assert resolve("from ..other import x", "pkg.sub.mod") == ["pkg.other"]
    assert resolve("from pkg.sub import mod, name", "pkg") == ["pkg.sub.mod", "pkg.sub"]
    assert resolve("import pkg.sub.mod as m", "pkg") == ["pkg.sub.mod"]
    assert resolve("import numpy", "pkg") == [None]


def _references(forbidden: tuple[str, ...]) -> Iterator[tuple[Path, int, str]]:
    """Every `<name>.x` module path, `from <name> import`, `import <name>` and `-m <name>` left in the repository.

    Python files are read through `ast` (their imports, and their strings for gunicorn and monkeypatch targets),
    so a variable that happens to be called `service` is no hit; other files are read line by line."""
    names = "|".join(map(re.escape, forbidden))
    dotted = re.compile(rf"(?<![\w/.-])(?:{names})\.([A-Za-z_]\w*)")
    bare = re.compile(rf"\bfrom\s+(?:{names})\s+import\b|\bimport\s+(?:{names})\b(?![-.\w])|-m\s+(?:{names})\b")
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in _python_texts(path, text, forbidden) if path.suffix == ".py" else _lines(text):
            stale = [m.group(0) for m in dotted.finditer(line) if m.group(1) not in FILE_EXTENSIONS]
            stale += [m.group(0) for m in bare.finditer(line)]
            for reference in stale:
                yield path, number, reference


def _lines(text: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(text.splitlines(), 1)


def _python_texts(path: Path, text: str, forbidden: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """A Python file's imports of the forbidden packages (spelt as source) and its string constants."""
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in forbidden:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in forbidden:
            yield node.lineno, f"from {node.module} import"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from ((node.lineno + offset, line) for offset, line in enumerate(node.value.splitlines()))


def _scanned_files() -> Iterator[Path]:
    for top in SCANNED:
        folder = ROOT / top
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path == Path(__file__).resolve() or SKIPPED_DIRS.intersection(path.parts):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                yield path
    yield from (path for path in ROOT.glob("*.md") if path.is_file())


def test_nothing_refers_to_a_top_level_package_pyproject_no_longer_declares() -> None:
    forbidden = tuple(sorted(set(LEGACY_TOP_LEVEL) - top_level_names()))
    if not forbidden:
        pytest.skip("pyproject still declares the top-level packages service and dashboard (before the move)")
    stale = [f"{path.relative_to(ROOT)}:{line}: {ref}" for path, line, ref in _references(forbidden)]
    assert not stale, f"references to {', '.join(forbidden)} (no longer packages; use facefleet.*):\n" + "\n".join(
        stale[:60]
    )


def test_the_only_top_level_package_is_facefleet() -> None:
    names = top_level_names()
    if set(LEGACY_TOP_LEVEL) & names:
        pytest.skip(f"pyproject still declares {sorted(names)} (before the move into the facefleet package)")
    assert names == {"facefleet"}, f"pyproject declares top-level packages {sorted(names)}; only facefleet is allowed"
    # The installed environment agrees: found from a folder outside the checkout, only facefleet resolves
    # (a stale editable install would still map service/ and dashboard/). find_spec imports nothing.
    probe = "import importlib.util as u, sys; sys.stdout.write(repr([bool(u.find_spec(n)) for n in sys.argv[1:]]))"
    names_checked = ["facefleet", *LEGACY_TOP_LEVEL]
    done = subprocess.run(
        [sys.executable, "-c", probe, *names_checked], cwd="/", capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == repr([True] + [False] * len(LEGACY_TOP_LEVEL)), (
        f"installed top-level packages {names_checked} -> {done.stdout}: re-run scripts/bootstrap.sh"
    )
