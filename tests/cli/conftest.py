"""The CLI tests' shared fixture: test_cli's `project` (a raydo.toml + flows module on the
session's Ray, and the installed `raydo` script joined to it), for the other CLI test files."""

from test_cli import project  # noqa: F401
