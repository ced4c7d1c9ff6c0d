"""MkDocs hook: the page "Modules" is made at build time from each module's own docstring.

The docstrings say why each module exists; the design page links here instead of repeating them,
so the site cannot drift from the code. Docstrings are read with `ast` (nothing is imported).
"""
from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "dashboard")
PAGE = "modules.md"


def anchor(path: Path) -> str:
    """`pipeline/runs/lifecycle.py` -> `pipeline-runs-lifecycle`, the id the design page links to."""
    return "-".join(path.with_suffix("").parts).replace("_", "-")


def modules() -> list[tuple[Path, str]]:
    """Every module with code under the packages, and its docstring ('' when it has none)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if not text.strip():
                continue  # an empty __init__.py only marks a package
            found.append((path.relative_to(ROOT), ast.get_docstring(ast.parse(text)) or ""))
    return found


def page_text() -> str:
    lines = ["# Modules", "",
             "Each module of `pipeline/` and `dashboard/` with its docstring, read from the code when this site",
             "is built. The [design page](design.md) says how they fit together.", ""]
    for path, doc in modules():
        lines += [f"## {path.as_posix()} {{#{anchor(path)}}}", ""]
        lines += ["```text", doc, "```", ""] if doc else ["(no docstring)", ""]
    return "\n".join(lines)


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=page_text()))
    return files
