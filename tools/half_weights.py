"""Store a Keras ``.weights.h5`` file with float16 values: half the size, same model.

``python -m tools.half_weights IN.weights.h5 OUT.weights.h5`` (see :mod:`tools.weightfiles.half`).
"""

import argparse
import sys
from pathlib import Path

from tools.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.half_weights", description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--model-only", action="store_true",
                        help="leave out the optimizer state a training checkpoint carries (to predict or warm-start)")
    return parser


def halve(args: argparse.Namespace) -> int:
    from tools.weightfiles.half import halve_weights_file

    before = Path(args.source).stat().st_size if Path(args.source).is_file() else 0
    halve_weights_file(args.source, args.target, model_only=args.model_only)
    print(f"{args.target}: {before / 1e6:.1f} MB -> {Path(args.target).stat().st_size / 1e6:.1f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, halve, argv)


if __name__ == "__main__":
    sys.exit(main())
