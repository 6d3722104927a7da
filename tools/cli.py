"""What every command shares: quiet start-up, and one line on stderr (exit 2) for a user's error.

Not a command itself; ``tools/*.py`` commands call :func:`run_command` from their ``main``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Callable

from preprocessing.errors import NucleiError

INTERRUPTED = 130  # the shell's status for Ctrl-C


def run_command(build_parser: Callable[[], argparse.ArgumentParser],
                command: Callable[[argparse.Namespace], int | None], argv: list[str] | None = None) -> int:
    """Parse ``argv``, run ``command(args)``, and turn user errors into one line and status 2.

    NucleiError (bad input, impossible request, a training run that stopped on NaN) prints
    ``error: ...``; Ctrl-C prints ``interrupted`` and returns 130 without a traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        status = command(args)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0 if status is None else int(status)
