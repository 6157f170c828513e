"""How every `python -m flows.X` ends: an operator's mistake is one line and exit code 2, a bug a traceback.

A mistake is a setting the environment lacks or holds wrong (SettingsError) or a parameter that cannot work
(InvalidParameter, or Prefect's own parameter validation). Flows check what they can before they start, so
such a run prints its one line and nothing else; a mistake found inside a run is printed the same way, and
Prefect's console lines about that run leave out the traceback (the run's logs on the server keep it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect.exceptions import ParameterTypeError, SignatureMismatchError

from app.settings import SettingsError, get_settings

USAGE_EXIT_CODE = 2


class InvalidParameter(ValueError):
    """A flow parameter that cannot work; the message names the parameter and what it accepts."""


OPERATOR_ERRORS: tuple[type[BaseException], ...] = (SettingsError, InvalidParameter, ParameterTypeError,
                                                    SignatureMismatchError)


class _DropOperatorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], OPERATOR_ERRORS):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def operator_errors_without_tracebacks() -> Iterator[None]:
    """While a CLI run lasts, the console handlers print an operator's mistake without its traceback."""
    handlers = {h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)}
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("prefect")]:
        handlers.update(h for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler))
    quiet = _DropOperatorTracebacks()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a flow module's `main(argv)`; operators' mistakes become `error: ...` on stderr and exit code 2."""
    try:
        get_settings()  # a bad environment is reported before anything starts
        with operator_errors_without_tracebacks():
            return main(argv)
    except OPERATOR_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE
