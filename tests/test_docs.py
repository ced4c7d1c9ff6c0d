"""The docs: the site builds with `mkdocs build --strict`, the README stays a short front page, and figures
speak of the machine, its load and the command, never of who else was using it.

Run: .venv/bin/python -m pytest tests/test_docs.py -q (a few seconds: one mkdocs build into a temporary folder).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200

# Phrases that describe who else used the machine, or a device lent for a while, instead of the machine's load.
# Written in pieces so that this file does not match itself.
CIRCUMSTANCES = [r"other (jobs|test runs|work|engineers|sessions)\b", r"shared with other",
                 r"shared (CPU|box|cores?|machine)\b", r"\blent\b", r"no GPU was " + "available",
                 r"development " + "machine"]
TEXT_SUFFIXES = {".md", ".py", ".yml", ".yaml", ".cfg", ".ini", ".txt", ""}


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file()
            and Path(n).name != Path(__file__).name]


def test_the_site_builds_strictly(tmp_path):
    """A broken link or anchor, a missing page or picture, or a page left out of the nav fails the build."""
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "modules" / "index.html").exists()  # made from the docstrings by docs/_hooks


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from (pages(value) if isinstance(value, list) else [value])

    listed = set(pages(config["nav"]))
    written = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert written - listed == set(), "pages no reader can reach from the nav"
    assert listed - written == {"modules.md"}  # the one page made at build time


def test_the_readme_is_a_short_front_page_whose_links_lead_somewhere():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make run" in text and "make test" in text
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_no_sentence_speaks_of_who_else_used_the_machine():
    found = []
    for path in _tracked_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(re.search(p, line, re.IGNORECASE) for p in CIRCUMSTANCES):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "say the machine, its load and the command instead:\n" + "\n".join(found)
