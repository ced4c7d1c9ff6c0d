"""The shape of the code: no import cycles, no torch behind a dashboard page, one module that ends runs.

Run: .venv/bin/python -m pytest tests/test_layout.py
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "dashboard")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules `path` imports at module level or in functions (what could ever form a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module(p) for p in files}
    graph = {_module(p): _imports(p, modules) - {_module(p)} for p in files}
    for module in list(graph):  # a module imports its packages' __init__ too
        parts = module.split(".")
        graph[module] |= {".".join(parts[:i]) for i in range(1, len(parts))} & modules
    return graph


def test_the_import_graph_has_no_cycles():
    graph, state, cycles = import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule (a facade) is not a cycle through it
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


DASHBOARD_MODULES = ["dashboard.store", "dashboard.tables", "dashboard.charts", "dashboard.ui", "dashboard.app",
                     "dashboard.launch_form", "dashboard.queue_view", "dashboard.predictions",
                     "dashboard.model_choice", "dashboard.serve", "dashboard.auth", "dashboard.refresh"]
PAGES = sorted(p.stem for p in (ROOT / "dashboard" / "views").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", DASHBOARD_MODULES + [f"dashboard.views.{p}" for p in PAGES])
def test_no_dashboard_module_loads_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch loaded by {module}'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


ENDS_RUNS = ("set_terminated", "update_run", "end_run")


def test_exactly_one_pipeline_module_changes_a_runs_status():
    writers = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ENDS_RUNS:
                writers.add(_module(path))
    assert writers == {"pipeline.runs.lifecycle"}


def test_the_vocabulary_imports_neither_torch_nor_mlflow():
    code = "import sys, pipeline.names; assert not {'torch', 'mlflow'} & set(sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]


def test_imaging_sits_below_training_and_serving_without_torch():
    code = ("import sys, pipeline.imaging.images, pipeline.imaging.folders; "
            "assert 'torch' not in sys.modules, 'torch loaded by pipeline.imaging'; "
            "assert not [m for m in sys.modules if m.startswith(('pipeline.training', 'pipeline.serving'))]")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
