"""Chaos runs: the short profile runs with the rest of the suite; `make chaos` runs the long
one (TQ_CHAOS_PROFILE=long, TQ_CHAOS_MINUTES, TQ_CHAOS_SEED to replay a run)."""

from __future__ import annotations

import json

import pytest

SUMMARIES: list[dict[str, object]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for summary in SUMMARIES:
        terminalreporter.section("chaos history summary")
        terminalreporter.write_line(json.dumps(summary, indent=2, default=str))
