"""What every command shares: quiet start-up, ``--verbose`` / ``--quiet``, and one line on stderr
(exit 2) for a user's error.

Not a command itself; ``tools/*.py`` commands call :func:`run_command` from their ``main``, which
adds to every command's parser (and to each of its sub-commands')::

    --verbose   TensorFlow's own start-up and log lines, and every warning (hidden by default,
                see tools/quiet.py)
    --quiet     no progress bars (they show only on a terminal anyway, see tools/progress.py)
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Callable

from preprocessing.errors import NucleiError
from tools import progress, quiet

INTERRUPTED = 130  # the shell's status for Ctrl-C
OUTPUT_FLAGS = {
    "--verbose": "show TensorFlow's start-up and log lines and every warning (hidden by default)",
    "--quiet": "no progress bars (shown only when stderr is a terminal anyway)",
}


def add_output_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--verbose`` and ``--quiet`` to ``parser`` and to each of its sub-command parsers.

    Sub-commands take them after their own name too (``tools.train unet --verbose``); a flag a
    parser already defines is left as it is.
    """
    def add(target: argparse.ArgumentParser, default) -> None:
        missing = [flag for flag in OUTPUT_FLAGS if flag not in target._option_string_actions]
        if missing:
            group = target.add_argument_group("output")
            for flag in missing:
                group.add_argument(flag, action="store_true", default=default, help=OUTPUT_FLAGS[flag])

    add(parser, False)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                add(sub, argparse.SUPPRESS)  # given after the sub-command, or the top-level value stays
    return parser


def configure_output(verbose: bool = False, quiet_bars: bool = False) -> None:
    """Quiet TensorFlow start-up (or ``verbose``: everything), progress bars on or off."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if verbose:
        quiet.verbose_tensorflow()
    else:
        warnings.filterwarnings("ignore", category=FutureWarning)
        quiet.quiet_tensorflow()
    progress.set_enabled(not quiet_bars)


def run_command(build_parser: Callable[[], argparse.ArgumentParser],
                command: Callable[[argparse.Namespace], int | None], argv: list[str] | None = None) -> int:
    """Parse ``argv``, run ``command(args)``, and turn user errors into one line and status 2.

    Before the command runs (and so before it imports TensorFlow) the output is set up from
    ``--verbose`` / ``--quiet`` (:func:`configure_output`). NucleiError (bad input, impossible
    request, a training run that stopped on NaN) prints ``error: ...``; Ctrl-C prints
    ``interrupted`` and returns 130 without a traceback.
    """
    args = add_output_flags(build_parser()).parse_args(argv)
    configure_output(getattr(args, "verbose", False), getattr(args, "quiet", False))
    try:
        status = command(args)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0 if status is None else int(status)
