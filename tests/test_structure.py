"""The layout's rules, checked on the source: dependencies point one way, no import circle, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trt_embed"
# What server/ may import from trt_embed: the runtime's public API, the error types, its own modules, and the
# artifact-level contract it reads at start-up.
SERVER_MAY_IMPORT = {"trt_embed", "trt_embed.errors", "trt_embed.runtime", "trt_embed.defaults", "trt_embed.manifest"}
MAX_LINES = 300  # runtime/ and server/ modules


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """trt_embed modules a module imports when it is imported (function-level and TYPE_CHECKING imports aside)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trt_embed"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file()
                found.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("trt_embed"))
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): top_level_imports(p) for p in PACKAGE.rglob("*.py")}


def test_server_imports_only_the_runtime_public_api() -> None:
    for path in (PACKAGE / "server").glob("*.py"):
        outside = {m for m in top_level_imports(path) if not m.startswith("trt_embed.server")}
        assert outside <= SERVER_MAY_IMPORT, f"{path.name} imports {sorted(outside - SERVER_MAY_IMPORT)}"


def test_engines_know_nothing_of_requests_or_http() -> None:
    for path in (PACKAGE / "engines").glob("*.py"):
        bad = {m for m in top_level_imports(path) if m.startswith(("trt_embed.runtime", "trt_embed.server"))}
        assert not bad, f"engines/{path.name} imports {sorted(bad)}"


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


def test_no_import_circle() -> None:
    circle = find_circle(graph())
    assert circle is None, f"import circle: {' -> '.join(circle or [])}"


def test_the_circle_check_can_fail() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_runtime_and_server_modules_stay_small() -> None:
    for folder in ("runtime", "server"):
        for path in (PACKAGE / folder).glob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= MAX_LINES, f"{folder}/{path.name} has {lines} lines (limit {MAX_LINES}): split it"
