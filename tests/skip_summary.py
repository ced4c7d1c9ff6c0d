"""Skipped tests are loud: the summary lists each one with its reason, and under CI=true any skip fails
the run, except a test marked `gpu` on a machine without one. A skipped test proves nothing, and
`make test` sets up what the suite needs (Chromium, PostgreSQL), so a skip means the set-up failed.

tests/conftest.py takes these hooks; `python -m pytest -p tests.skip_summary` uses them alone
(tests/test_suite_rules.py does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

ALLOWED_MARKER = "gpu"  # a GPU-only test may skip where there is no GPU
_SKIPS = pytest.StashKey[list]()


@dataclass
class Skip:
    nodeid: str
    reason: str
    allowed: bool


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skips_of(reports) -> list[Skip]:
    """The skipped tests among pytest's reports (xfails are not skips)."""
    found = []
    for report in reports:
        if not report.skipped or hasattr(report, "wasxfail"):
            continue
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        allowed = ALLOWED_MARKER in getattr(report, "keywords", {})
        found.append(Skip(report.nodeid, reason.removeprefix("Skipped: "), allowed))
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # runs before the terminal summary, and session.exitstatus is what pytest exits with
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skips = skips_of(reporter.stats.get("skipped", [])) if reporter else []
    session.config.stash[_SKIPS] = skips
    if in_ci() and session.exitstatus == pytest.ExitCode.OK and any(not s.allowed for s in skips):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = config.stash.get(_SKIPS, [])
    if not skips:
        return
    refused = [s for s in skips if not s.allowed]
    terminalreporter.section(f"{len(skips)} skipped ({len(refused)} not GPU-only)", sep="=",
                             red=bool(refused), yellow=not refused, bold=True)
    for skip in skips:
        label = f"allowed ({ALLOWED_MARKER})" if skip.allowed else "SKIPPED"
        terminalreporter.line(f"{label} {skip.nodeid}: {skip.reason}", red=not skip.allowed)
    if refused and in_ci():
        terminalreporter.line(f"CI=true: {len(refused)} skipped test(s) fail this run "
                              f"(only tests marked `{ALLOWED_MARKER}` may skip)", red=True, bold=True)
    elif refused:
        terminalreporter.line(f"these {len(refused)} test(s) proved nothing here; under CI=true they fail the run "
                              "(`make test` installs Chromium and PostgreSQL for them)", red=True, bold=True)
