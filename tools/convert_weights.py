"""Convert torchvision's ImageNet MobileNetV2 checkpoint into this project's Keras weights, without torch.

Usage::

    python -m tools.convert_weights mobilenetv2 --checkpoint mobilenet_v2-b0353104.pth \\
        --out weights/mobilenetv2_imagenet.weights.h5

The reading and mapping live in :mod:`tools.weightfiles.convert`.
"""

import argparse
import sys
from pathlib import Path

from tools.cli import run_command


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.convert_weights", description=__doc__.split("\n")[0])
    parser.add_argument("architecture", choices=["mobilenetv2"], help="which network the checkpoint holds")
    parser.add_argument("--checkpoint", required=True, help="torch .pth (torchvision state_dict)")
    parser.add_argument("--out", required=True, help="output .weights.h5 (named layers; see preprocessing/mobilenetv2.py)")
    return parser


def convert(args: argparse.Namespace) -> int:
    from tools.weightfiles.convert import convert_mobilenetv2

    model = convert_mobilenetv2(args.checkpoint, args.out)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {model.count_params():,} parameters, {len(model.layers)} layers, {size / 1e6:.1f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
