"""The share of mutants killed per module, from mutmut 3's results in mutants/ (`make mutation` prints it last).

Killed: a selected test failed (or timed out) with the mutant in place. A survivor is either killed by a
new test or explained in the table of docs/testing.md (Tests, mutation testing). Goal: at least 80 % per module.

    .venv/bin/python bench/mutation_score.py [pipeline.training.state ...]   (default: every mutated module)
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code  # mutmut's own reading of a mutant's exit code

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "caught by type check"}
GOAL = 0.8


def module_of(meta: Path) -> str:
    return ".".join(meta.relative_to(ROOT / "mutants").with_suffix("").with_suffix("").parts)


def scores(modules: list[str]) -> dict[str, Counter]:
    """module -> count of mutants per status; only mutants that were run count."""
    found = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        module = module_of(meta)
        if modules and module not in modules:
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"].values()
        found[module] = Counter(status_by_exit_code[code] for code in codes if code is not None)
    return found


def main(modules: list[str]) -> int:
    found = scores(modules)
    if not found:
        print("no mutation results: run `make mutation` first", file=sys.stderr)
        return 1
    print(f"{'module':<28} {'mutants':>7} {'killed':>6} {'survived':>8} {'other':>5} {'killed %':>8}")
    for module, counts in found.items():
        total = sum(counts.values())
        if not total:
            print(f"{module:<28} not run")
            continue
        killed = sum(counts[s] for s in KILLED)
        other = total - killed - counts["survived"]  # no tests reach it, suspicious, segfault
        share = killed / total if total else 0.0
        flag = "" if share >= GOAL else f"  (goal {GOAL:.0%})"
        print(f"{module:<28} {total:>7} {killed:>6} {counts['survived']:>8} {other:>5} {share:>8.0%}{flag}")
    print("survivors: .venv/bin/mutmut results; one in detail: .venv/bin/mutmut show NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
