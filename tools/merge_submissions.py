"""Merge shard submissions: ``python -m tools.merge_submissions OUT.csv SHARD_DIR_OR_CSV...``.

Joins what ``python -m tools.predict --shard K/N --out DIR`` wrote on N machines into one Kaggle
submission, images sorted by id. Give the shard folders (their submission.csv and run.json): the
merge checks that shards 1..N are all there, finished, of the same images and settings, that
every image is in exactly one shard, and that no two nuclei of an image overlap. Bare CSV files
are merged with the last two checks only. Nothing is written unless every check passes; OUT.csv
is written atomically. See tools/kaggle/merge.py.
"""

import argparse
import sys

from tools.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.merge_submissions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", metavar="OUT.csv", help="the merged submission")
    parser.add_argument("shards", metavar="SHARD", nargs="+",
                        help="a shard's predict --out folder, or a submission CSV file")
    return parser


def merge(args: argparse.Namespace) -> int:
    from tools.kaggle.merge import merge_submissions

    report = merge_submissions(args.out, args.shards)
    if report.manifests:
        print(f"merged {report.shards} shard{'s' if report.shards != 1 else ''} (all of the split, "
              f"no image missing or twice, no overlapping nuclei)")
    else:
        print(f"merged {report.shards} CSV file{'s' if report.shards != 1 else ''} (no image twice, no overlapping "
              "nuclei; without the shards' run.json nothing shows whether an image is missing)")
    print(f"{report.images} images, {report.nuclei} nuclei -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, merge, argv)


if __name__ == "__main__":
    sys.exit(main())
