"""Score a Kaggle DSB 2018 submission against the answers, as Kaggle did.

Usage::

    python -m tools.evaluate SUBMISSION.csv --solution SOLUTION.csv [--json OUT.json]
    python -m tools.evaluate SUBMISSION.csv --labels DIR [--json OUT.json]

``--solution`` is Kaggle's answer key (``ImageId,EncodedPixels,Height,Width[,Usage]``; rows
with ``Usage=Ignored`` are skipped as Kaggle's scorer does); ``--labels`` is a data folder in
Kaggle's layout (``<id>/images``, ``<id>/masks``), which also gives per-type means.
``--domains FILE`` (from bench/domains.py) adds the score and the true and predicted nucleus
counts per acquisition domain, and the domain-balanced score (each domain weighing the same).

Prints the per-threshold table, the worst images, per-type means, and last the line
``score: 0.xxxx``. The rules are :mod:`tools.kaggle.scoring`'s. User errors exit with
status 2 and a one-line message on stderr.
"""

import argparse
import sys
from pathlib import Path

from tools.cli import run_command
from tools.kaggle.scoring import WORST_IMAGES_SHOWN


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate",
        description="Score a DSB 2018 submission CSV with Kaggle's metric "
                    "(mean over IoU thresholds 0.50..0.95 of TP/(TP+FP+FN)).")
    parser.add_argument("submission", type=Path, help="submission CSV: ImageId,EncodedPixels")
    answers = parser.add_mutually_exclusive_group(required=True)
    answers.add_argument("--solution", type=Path,
                         help="Kaggle solution CSV: ImageId,EncodedPixels,Height,Width[,Usage]")
    answers.add_argument("--labels", type=Path, metavar="DIR",
                         help="data folder in Kaggle's layout (<id>/images, <id>/masks)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the scores as JSON")
    parser.add_argument("--domains", type=Path, metavar="FILE",
                        help="acquisition domains of the images (a file from bench/domains.py): "
                             "adds scores and nucleus counts per domain and the domain-balanced score")
    parser.add_argument("--worst", type=int, default=WORST_IMAGES_SHOWN, metavar="N",
                        help=f"how many of the lowest-scoring images to list (default {WORST_IMAGES_SHOWN})")
    return parser


def evaluate(args: argparse.Namespace) -> int:
    from preprocessing.errors import NucleiError
    from preprocessing.files import write_text_atomically
    from tools.kaggle.scoring import add_domains, evaluate_submission, format_report, result_json

    if args.json is not None and args.json.is_dir():
        raise NucleiError("--json is a folder, expected a file name", args.json)
    domains = None
    if args.domains is not None:
        from preprocessing.domains import load_domains

        domains = load_domains(args.domains)
    try:
        result = evaluate_submission(args.submission, args.solution, args.labels)
    except OSError as error:  # unreadable file
        raise NucleiError(error.strerror or str(error), error.filename) from None
    if domains is not None:
        add_domains(result, domains)
        unassigned = result["per_domain"].get("unassigned")
        if unassigned:
            result["warnings"].append(f"{unassigned['images']} image(s) are not in {args.domains}: "
                                      "counted as 'unassigned'")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json is not None:
        write_text_atomically(args.json, result_json(result))
    print(format_report(result, max(args.worst, 0)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
