"""The benchmark's user-facing errors and exit statuses.

- 0: done, and every model reached ``--min-success``;
- 2: a ``BenchmarkError`` (a bad flag, an unreadable file, an unreachable endpoint...): one
  line on stderr, never a traceback;
- 3 (``EXIT_LOW_SUCCESS``): the run finished, but some model's success rate was below
  ``--min-success``; its errors are printed and in the report;
- 4 (``EXIT_DOCTOR_FAILED``): ``doctor`` ran its checks and at least one FAILed (each is printed
  with what was seen and the fix);
- 130: interrupted (Ctrl-C); 143: terminated (SIGTERM).
"""

EXIT_LOW_SUCCESS = 3
EXIT_DOCTOR_FAILED = 4
EXIT_STATUSES = ("exit status: 0 done; 2 bad input or setup (one line on stderr); 3 a model's success rate "
                 "below --min-success (its errors are printed); 4 a doctor check failed; 130 interrupted (Ctrl-C); "
                 "143 terminated (SIGTERM)")


class BenchmarkError(Exception):
    """Something the user can fix: bad flag, unreadable file, unreachable endpoint."""
