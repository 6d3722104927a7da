"""Average weights files of one architecture into one model (a "model soup").

``python -m tools.average_weights OUT.weights.h5 A.weights.h5 B.weights.h5 [--fractions 0.5,0.5]``
(see :mod:`tools.weightfiles.average`): for runs fine-tuned from the same starting file.
"""

import argparse
import sys
from pathlib import Path

from tools.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.average_weights", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the averaged .weights.h5 to write")
    parser.add_argument("sources", nargs="+", help="two or more .weights.h5 files of one architecture")
    parser.add_argument("--fractions", help="comma-separated weight per source, summing to 1 (default: equal)")
    return parser


def average(args: argparse.Namespace) -> int:
    from preprocessing.errors import NucleiError
    from tools.weightfiles.average import average_weights_files

    fractions = None
    if args.fractions:
        try:
            fractions = [float(value) for value in args.fractions.split(",")]
        except ValueError:
            raise NucleiError(f"--fractions must be comma-separated numbers, got {args.fractions!r}") from None
    average_weights_files(args.sources, args.target, fractions)
    print(f"{args.target}: average of {len(args.sources)} files, {Path(args.target).stat().st_size / 1e6:.1f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, average, argv)


if __name__ == "__main__":
    sys.exit(main())
