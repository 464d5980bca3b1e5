"""The package's imports run one way, down the path of the data (docs/ARCHITECTURE.md).

The import graph is built from the source with `ast`, counting every import: at module level,
inside functions, and module names written as strings for lazy exports (`"cnnlab.api"` in an
`_EXPORTS` table). Imports under `if TYPE_CHECKING:` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cnnlab

PACKAGE_DIR = Path(cnnlab.__file__).parent

# Layers from the bottom up. A module may import only from its own layer's modules and from
# layers listed before it. Keep in step with docs/ARCHITECTURE.md.
LAYERS = [
    ("errors", "utils", "version"),
    ("data",),
    ("scratch",),
    ("engines",),
    ("runs",),
    ("models",),
    ("config",),
    ("verify",),
    ("training",),
    ("inspect",),
    ("results",),
    ("api", "plot"),
    ("study",),
    ("commands", "cli", "__main__", ""),  # "" is the package's own __init__
]


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def _owner(name: str, modules: dict) -> str | None:
    """The module `name` refers to: itself, or the nearest enclosing module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        targets: list[str] = []
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:  # `from a import b`: module a.b if it is one, else a
                    targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and "." in node.value and node.value in modules):
                targets.append(node.value)
        deps = {_owner(t, modules) for t in targets if t.split(".")[0] == "cnnlab"}
        graph[module] = {d for d in deps if d and d != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"module {module} is in no layer of LAYERS; add its top-level name there")


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_only_go_down_the_layers():
    upward = sorted(
        f"{module} (layer {LAYERS[layer_of(module)]}) imports {dep} (layer {LAYERS[layer_of(dep)]})"
        for module, deps in import_graph().items() for dep in deps
        if layer_of(dep) > layer_of(module)
    )
    assert not upward, "imports that go up the layers:\n" + "\n".join(upward)


def test_the_checker_finds_cycles_and_upward_imports():
    graph = {"cnnlab.a": {"cnnlab.b"}, "cnnlab.b": {"cnnlab.c"}, "cnnlab.c": {"cnnlab.a"}}
    assert find_cycle(graph) == ["cnnlab.a", "cnnlab.b", "cnnlab.c", "cnnlab.a"]
    assert find_cycle({"cnnlab.a": {"cnnlab.b"}, "cnnlab.b": set()}) is None
    assert layer_of("cnnlab.training.trainer") > layer_of("cnnlab.runs")


def test_imports_inside_functions_and_lazy_export_strings_are_counted():
    graph = import_graph()
    # `cnnlab.models.build` imports the engine registry inside the function
    assert "cnnlab.engines" in graph["cnnlab.models"]
    # `cnnlab.train` is exported lazily by name
    assert "cnnlab.api" in graph["cnnlab"]
    # a typing-only import is not an edge
    assert "cnnlab.inspect.stats" not in graph["cnnlab.inspect.formatting"]


@pytest.mark.parametrize("module", ["cnnlab.runs", "cnnlab.engines", "cnnlab.config", "cnnlab.models"])
def test_low_layers_import_without_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch"
