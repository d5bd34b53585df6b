"""The crash matrix prints one table of every scenario that ran at the end of the session."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import chaoslib

    if chaoslib.VERDICTS:
        terminalreporter.section("raydo crash matrix")
        terminalreporter.write_line(chaoslib.table(chaoslib.VERDICTS))
        for v in chaoslib.VERDICTS:
            for note in v.notes:
                terminalreporter.write_line(f"{v.scenario}: {note}")
