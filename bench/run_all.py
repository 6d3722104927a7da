"""``make bench``: the quick benchmarks, one after the other, each writing its JSON to bench/results/.

Runs what needs nothing but the repository (RLE and metric, augmentation, a few U-Net training
steps). The long ones (inference on the stage-1 test images, the Mask R-CNN, the GPU recipes)
take their own arguments; bench/RESULTS.md gives their commands. ``--quick`` shortens each run.
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BENCHMARKS = {
    "core": (["bench/bench_core.py"], ["--repeats", "1"]),
    "augment": (["bench/bench_augment.py"], ["--images", "2", "--repeats", "1", "--sizes", "256"]),
    "unet_train": (["bench/bench_unet_train.py"], ["--steps", "1", "--batch-size", "2"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run_all.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortest run of each (a smoke test)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        script, quick = BENCHMARKS[name]
        command = [sys.executable, *script, *(quick if args.quick else [])]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("all benchmarks ran; figures in bench/results/*.json (latest kept in bench/RESULTS.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
