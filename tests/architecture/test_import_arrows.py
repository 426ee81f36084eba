"""The packages import one way: spec <- checkpoint library <- reference trainer; the suite drives
adapters, and nothing imports the suite but adapters (see docs/architecture.md).

Read statically (every ``import`` statement, at any depth), so a lazy import inside a function
counts too. ``ckptspec.cli`` is the composition root: it names its subcommands' modules as
strings and imports only the one that runs, so it is not an import of them here.

Also: no import cycle among the project's modules, and ``ckptspec`` proper (spec/) stays
torch-free, read statically and checked by importing it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {  # folder -> package, as pyproject.toml maps them
    folder: package
    for package, folder in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"].items()
}
SUITE, TRAINER, LIBRARY = (
    "ckptspec.conformance",
    "ckptspec.reference_impl",
    "ckptspec.checkpointing",
)
ADAPTERS = {
    "reference_impl/adapter.py"
}  # the reference trainer's adapter implements the suite's protocol


def _modules() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (REPO / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """What ``path`` imports, at any depth; ``from package import name`` also gives
    ``package.name`` (the module, when ``name`` is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_run_one_way(path: Path) -> None:
    rel = str(path.relative_to(REPO))
    imported = {m for m in _imports(path) if _under(m, "ckptspec")}
    if rel.startswith("checkpointing/"):
        forbidden = [m for m in imported if _under(m, SUITE) or _under(m, TRAINER)]
    elif rel.startswith("spec/"):
        forbidden = [
            m for m in imported if _under(m, SUITE) or _under(m, TRAINER) or _under(m, LIBRARY)
        ]
    elif rel.startswith("reference_impl/") and rel not in ADAPTERS:
        forbidden = [m for m in imported if _under(m, SUITE)]
    else:
        forbidden = []
    assert not forbidden, (
        f"{rel} imports {sorted(forbidden)} against the arrows of docs/architecture.md"
    )


def test_nothing_but_adapters_imports_the_suite() -> None:
    importers = {
        str(p.relative_to(REPO)) for p in _modules() if any(_under(m, SUITE) for m in _imports(p))
    }
    outside = {p for p in importers if not p.startswith("conformance/")} - ADAPTERS
    assert not outside, f"modules outside the suite that import it: {sorted(outside)}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_no_import_cycle() -> None:
    """No project module reaches itself through imports, lazy ones (inside functions) included:
    a cycle hidden behind a lazy import still ties the modules into one."""
    paths = {_module_name(p): p for p in _modules()}
    graph = {name: (_imports(path) & set(paths)) - {name} for name, path in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def _torch_free_layer() -> list[Path]:
    """``ckptspec`` proper: the spec/ folder."""
    return sorted((REPO / "spec").rglob("*.py"))


def _module_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported: every import outside function bodies."""
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text())]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
            pending.append(child)
    return found


@pytest.mark.parametrize("path", _torch_free_layer(), ids=lambda p: str(p.relative_to(REPO)))
def test_torch_free_layer_imports_no_torch_when_loaded(path: Path) -> None:
    """Statically: importing a module of ``ckptspec`` proper imports no torch (a deep check may
    import it inside the function that needs it) and nothing of the library, trainer or suite."""
    heavy = [m for m in _module_level_imports(path) if _under(m, "torch")]
    assert not heavy, (
        f"{path.relative_to(REPO)} imports {sorted(heavy)} when loaded; ckptspec proper is torch-free"
    )


def test_torch_free_layer_loads_without_torch() -> None:
    """At run time: importing every module of ``ckptspec`` proper (the CLI and the validator
    among them) leaves torch unloaded."""
    names = sorted(_module_name(p) for p in _torch_free_layer() if p.name != "__main__.py")
    code = (
        f"import importlib, sys\nfor n in {names!r}: importlib.import_module(n)\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"ckptspec.cli", "ckptspec.validator"} <= set(names)


def test_suite_plugin_loads_without_torch_or_hypothesis() -> None:
    """The pytest plugin is loaded by every pytest run where ckptspec is installed: loading it
    imports neither torch nor Hypothesis (the harness and the Hypothesis profile come on first use)."""
    code = (
        "import sys\nimport ckptspec.conformance.plugin\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'hypothesis'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_folder_map_is_the_one_python_imports_by() -> None:
    """The arrows above are read through pyproject's folder -> package map: every module read
    here is the file Python imports under that name, so the arrows checked are the real ones."""
    # A fresh interpreter: find_spec imports each module's parent packages.
    code = (
        "import importlib.util, json, sys\n"
        "names = json.loads(sys.argv[1])\n"
        "print(json.dumps({n: importlib.util.find_spec(n).origin for n in names}))\n"
    )
    paths = {_module_name(p): p for p in _modules()}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted(paths))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    origins = json.loads(done.stdout)
    wrong = {n: o for n, o in origins.items() if o is None or Path(o).resolve() != paths[n]}
    assert not wrong, f"modules Python imports from another file than the one read: {wrong}"
