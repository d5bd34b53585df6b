"""The `raydo` command (needs the `raydo[cli]` extra: typer and rich)."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point: a clear message instead of a traceback without the extra."""
    try:
        from .app import main as run
    except ImportError as exc:
        print(
            f"raydo: the command line needs its extra ({exc.name} is missing): "
            "pip install 'raydo[cli]'",
            file=sys.stderr,
        )
        sys.exit(2)
    run()
