"""The suite's own rules: `make test` sets up what its tests need, and a skip is loud (a failure under CI=true).

Run: .venv/bin/python -m pytest tests/test_suite_rules.py -q (a few seconds: small pytest and make subprocesses).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

def test_passes():
    pass

def test_needs_a_browser():
    pytest.skip("no chromium here")

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no GPU here")
'''


def _pytest(folder: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_summary", "-q", "-p", "no:cacheprovider",
                           "-W", "ignore::pytest.PytestUnknownMarkWarning", str(folder), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_is_listed_with_its_reason_and_fails_the_run_only_under_ci(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)

    here = _pytest(tmp_path, None)
    assert here.returncode == 0, here.stdout
    # the file's path is shown relative to the root pytest picks, which depends on where the clone lies
    assert re.search(r"SKIPPED \S*test_sample\.py::test_needs_a_browser: no chromium here", here.stdout), here.stdout
    assert re.search(r"allowed \(gpu\) \S*test_sample\.py::test_needs_a_gpu: no GPU here", here.stdout), here.stdout
    assert "under CI=true they fail the run" in here.stdout

    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    assert "CI=true: 1 skipped test(s) fail this run" in ci.stdout


def test_under_ci_a_gpu_only_skip_is_allowed(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    ci = _pytest(tmp_path, "true", "-k", "not browser")
    assert ci.returncode == 0, ci.stdout
    assert re.search(r"allowed \(gpu\) \S*test_sample\.py::test_needs_a_gpu", ci.stdout), ci.stdout


def test_make_test_installs_the_browser_and_postgresql_before_running_the_tests():
    """`make -n` prints the recipes without running them: the set-up comes before pytest."""
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAKEFLAGS": ""}).stdout
    tests = plan.index("-m pytest tests")
    assert -1 < plan.find("apt-get install -y -qq chromium") < tests, plan
    assert -1 < plan.find("apt-get install -y -qq postgresql") < tests, plan


def test_ci_runs_make_test_with_ci_set():
    """.ci/run is what CI runs: there a skipped browser or cluster test must fail the run."""
    script = (ROOT / ".ci" / "run").read_text()
    assert 'export CI="${CI:-true}"' in script and script.rstrip().endswith("make test")
