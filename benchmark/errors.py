"""The benchmark's user-facing errors: the CLI prints their message on one line and exits 2."""


class BenchmarkError(Exception):
    """Something the user can fix: bad flag, unreadable file, unreachable endpoint."""
