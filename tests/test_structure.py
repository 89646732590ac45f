"""The layout's rules, checked on the source: dependencies point one way, no import circle at any level (every
import counts, also inside functions and under TYPE_CHECKING), short functions, and a README map that names every
module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trt_embed"
# What server/ may import from trt_embed: the runtime's public API, the error types, its own modules, and the
# artifact-level contract it reads at start-up.
SERVER_MAY_IMPORT = {"trt_embed", "trt_embed.errors", "trt_embed.runtime", "trt_embed.defaults", "trt_embed.manifest"}
MAX_FUNCTION_LINES = 60  # runtime/ and exporter/


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """trt_embed modules a module imports: every `import` and `from` in it (only those run on import with
    `top_level_only`: function-level and TYPE_CHECKING imports aside)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trt_embed"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _is_module(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("trt_embed"))
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def packages() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("__init__.py")}


def package_graphs(edges: dict[str, set[str]], packages: set[str]) -> dict[str, dict[str, set[str]]]:
    """For each package, the graph of its direct children (modules and sub-packages): a module's imports lifted
    to the children of the package that hold both ends. trt_embed's graph is the one of its top-level parts."""

    def child(package: str, module: str) -> str | None:
        if not module.startswith(package + "."):
            return None
        return f"{package}.{module[len(package) + 1 :].split('.')[0]}"

    lifted: dict[str, dict[str, set[str]]] = {}
    for package in packages:
        children: dict[str, set[str]] = {}
        for source, targets in edges.items():
            if (start := child(package, source)) is not None:
                ends = {end for t in targets if (end := child(package, t)) is not None and end != start}
                children.setdefault(start, set()).update(ends)
        lifted[package] = children
    return lifted


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle in `edges` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if target == node or target not in edges:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (circle := visit(target, [*path, target])):
                return circle
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_server_imports_only_the_runtime_public_api() -> None:
    for path in (PACKAGE / "server").glob("*.py"):
        outside = {m for m in imports(path, top_level_only=True) if not m.startswith("trt_embed.server")}
        assert outside <= SERVER_MAY_IMPORT, f"{path.name} imports {sorted(outside - SERVER_MAY_IMPORT)}"


def test_engines_know_nothing_of_requests_or_http() -> None:
    for path in (PACKAGE / "engines").glob("*.py"):
        bad = {m for m in imports(path) if m.startswith(("trt_embed.runtime", "trt_embed.server"))}
        assert not bad, f"engines/{path.name} imports {sorted(bad)}"


def test_no_import_circle_between_modules() -> None:
    circle = find_circle(graph())
    assert circle is None, f"import circle (function-level imports included): {' -> '.join(circle or [])}"


def test_no_import_circle_between_packages() -> None:
    for package, children in sorted(package_graphs(graph(), packages()).items()):
        circle = find_circle(children)
        assert circle is None, f"import circle between the parts of {package}: {' -> '.join(circle or [])}"


def test_the_circle_checks_can_fail(tmp_path: Path) -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None
    edges = {"trt_embed.x.a": {"trt_embed.y.b"}, "trt_embed.y.c": {"trt_embed.x.d"}}  # no module circle
    lifted = package_graphs(edges, {"trt_embed", "trt_embed.x", "trt_embed.y"})
    assert find_circle(edges) is None
    assert find_circle(lifted["trt_embed"]) == ["trt_embed.x", "trt_embed.y", "trt_embed.x"]
    source = tmp_path / "m.py"
    source.write_text("def f() -> None:\n    from trt_embed.errors import ExportError\n")
    assert imports(source) == {"trt_embed.errors"} and imports(source, top_level_only=True) == set()


def long_functions(folder: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize(
    "folder",
    [
        "runtime",
        "exporter",
    ],
)
def test_functions_stay_short(folder: str) -> None:
    too_long = long_functions(folder)
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {'; '.join(too_long)}: split them"


def layout_map() -> dict[Path, set[str]]:
    """The README's "Layout" block: each folder it maps (a line `  FOLDER/` or `  FOLDER/SUB/`, path from
    trt_embed/) -> the file names named in its lines; top-level modules are named in lines that start with one."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- test: layout -->", 1)[1].split("```", 2)[1]
    named: dict[Path, set[str]] = {}
    folder = PACKAGE
    for line in block.splitlines():
        head = re.match(r"\s{2}(\w+(?:/\w+)*)/", line)
        if head:
            folder = PACKAGE / head[1]
        elif re.match(r"\s{2}\w+\.(?:py|yaml)", line):
            folder = PACKAGE
        rest = line[head.end() :] if head else line
        named.setdefault(folder, set()).update(re.findall(r"\b(\w+\.(?:py|yaml))\b", rest))
    return named


def test_readme_layout_names_every_module() -> None:
    named = layout_map()
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" and path.name not in named.get(path.parent, set())
    ]
    assert not missing, f"README's Layout section does not name {', '.join(missing)}: add each under its folder"


def test_the_layout_check_can_fail() -> None:
    named = layout_map()
    assert "export.py" in named[PACKAGE / "exporter"] and "export.py" not in named.get(PACKAGE / "runtime", set())
