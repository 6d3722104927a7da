"""What travels to a lent GPU machine, and a slim branch that fits its 64 MiB.

The device tool copies the working tree to the GPU machine on every call: tracked files,
untracked files git does not ignore, and the ignored paths named in ``carry``, 64 MiB at most.
Since session 15 the repository ships each model twice (``X.weights.h5`` and the stain-trained
``X.stain.weights.h5``, tools/inference/routing.py) and the tracked files alone weigh 60 MB; with
the wheels (6.9 MB) and the training pack (20 MB, bench/make_gpu_pack.py) a call would be refused.
A GPU job warm-starts from one file per model, so the others need not travel. ``enter`` commits
their removal on a branch of its own (a commit, so the tree that travels is the same whether the
tool lists files from HEAD, the index or the disk); ``leave`` goes back, and git restores them:

    python bench/gpu_travel.py check --carry .whl .gpu     # what would travel now; exit 1 if over
    python bench/gpu_travel.py enter [--warm-from stain]   # branch gpu-travel without unused weights
    run(command="OUT=$OUT bash bench/gpu_session.sh 420", carry=[".whl", ".gpu"], timeout_s=600)
    python bench/gpu_travel.py leave                       # back where you were, every file restored

Run ``leave`` straight after the device call: work and commits belong on the branch you left.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LIMIT_BYTES = 64 * 2 ** 20  # the device tool's limit on what travels per call
BRANCH = "gpu-travel"
MARKER = "gpu-travel-from"  # in .git/: the branch `enter` left and the travel branch's commit


def git(root: Path, *args: str) -> str:
    """stdout of ``git args`` in root; a failing git command ends the program with its message."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def repository_root(start: Path) -> Path:
    return Path(git(start, "rev-parse", "--show-toplevel").strip())


def marker_path(root: Path) -> Path:
    """.git/gpu-travel-from: the branch ``enter`` left and the commit it made, read by ``leave``."""
    return root / git(root, "rev-parse", "--git-dir").strip() / MARKER  # (an absolute git dir stays itself)


def travelling_files(root: Path, carry: list[str]) -> dict[str, int]:
    """{path relative to root: bytes} of what a device call copies: tracked files present on disk,
    untracked files not ignored, and every file under the carried paths."""
    listed = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    sizes = {}
    for name in filter(None, listed):
        path = root / name
        if path.is_file() and not path.is_symlink():
            sizes[name] = path.stat().st_size
    for folder in carry:
        base = root / folder
        if not base.exists():
            sys.exit(f"carried path {folder} does not exist in {root}")
        for path in [base] if base.is_file() else base.rglob("*"):
            if path.is_file():
                sizes[str(path.relative_to(root))] = path.stat().st_size
    return sizes


def report(sizes: dict[str, int], carry: list[str]) -> bool:
    """Print the total per top-level part and the largest files; True when within LIMIT_BYTES."""
    parts: dict[str, int] = {}
    for name, size in sizes.items():
        top = next((c for c in carry if name == c or name.startswith(c.rstrip("/") + "/")), None)
        key = f"{top} (carried)" if top else name.split("/")[0]
        parts[key] = parts.get(key, 0) + size
    for key, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        if size >= 100_000:
            print(f"  {size / 2 ** 20:7.1f} MiB  {key}")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  largest: {size / 2 ** 20:5.1f} MiB  {name}")
    total = sum(sizes.values())
    fits = total <= LIMIT_BYTES
    print(f"travels: {total / 2 ** 20:.1f} MiB of {LIMIT_BYTES / 2 ** 20:.0f} MiB "
          f"({len(sizes)} files, {total} bytes): {'fits' if fits else 'TOO LARGE, the device call would be refused'}")
    return fits


def unused_weights(root: Path, warm_from: str, keep: list[str]) -> list[str]:
    """Tracked weights/*.h5 a warm-started GPU job does not read: all but weights/{unet,mrcnn}.weights.h5
    (``warm_from`` 'stain': their X.stain.weights.h5 instead) and the ``keep`` paths."""
    suffix = f".{warm_from}.weights.h5" if warm_from else ".weights.h5"
    needed = {f"weights/{model}{suffix}" for model in ("unet", "mrcnn")} | set(keep)
    tracked = [n for n in git(root, "ls-files", "-z", "weights").split("\0") if n.endswith(".h5")]
    missing = sorted(n for n in needed if n.endswith(".h5") and n not in tracked)
    if missing:
        sys.exit(f"the GPU job needs {', '.join(missing)}, which is not tracked in {root}")
    return sorted(n for n in tracked if n not in needed)


def enter(root: Path, warm_from: str, keep: list[str], carry: list[str]) -> int:
    if git(root, "status", "--porcelain", "--untracked-files=no").strip():
        sys.exit("uncommitted changes to tracked files: commit them before `enter` (they would travel "
                 "on the travel branch and be left behind by `leave`)")
    current = git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if current == BRANCH:
        sys.exit(f"already on {BRANCH}: `leave` first")
    if git(root, "branch", "--list", BRANCH).strip():
        sys.exit(f"a branch {BRANCH} exists from an earlier `enter`: `git branch -D {BRANCH}` if it holds nothing you need")
    unused = unused_weights(root, warm_from, keep)
    git(root, "switch", "-q", "-c", BRANCH)
    if unused:
        git(root, "rm", "-q", "--", *unused)
        git(root, "commit", "-q", "-m", f"GPU travel: without {', '.join(unused)} (bench/gpu_travel.py)")
    marker_path(root).write_text(f"{current}\n{git(root, 'rev-parse', 'HEAD').strip()}\n")
    print(f"on branch {BRANCH} (from {current}), without: {', '.join(unused) or 'nothing'}")
    fits = report(travelling_files(root, carry), carry)
    print("after the device call: python bench/gpu_travel.py leave")
    return 0 if fits else 1


def leave(root: Path) -> int:
    marker = marker_path(root)
    if not marker.is_file():
        sys.exit(f"no `enter` to leave ({marker} absent)")
    origin, travel_commit = marker.read_text().split()
    if git(root, "rev-parse", BRANCH).strip() != travel_commit:  # -D below would lose those commits
        sys.exit(f"{BRANCH} holds commits `enter` did not make: move them to {origin} "
                 f"(git cherry-pick), then `git branch -D {BRANCH}` and `rm {marker}`")
    if git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == BRANCH:
        if git(root, "status", "--porcelain", "--untracked-files=no").strip():
            sys.exit(f"uncommitted changes on {BRANCH}: commit them to {origin} yourself, then `leave`")
        git(root, "switch", "-q", origin)
    git(root, "branch", "-q", "-D", BRANCH)
    marker.unlink()
    print(f"back on {origin}; branch {BRANCH} removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="what would travel now, against the limit (exit 1 if over)")
    check.add_argument("--carry", nargs="*", default=[], help="the paths the call will carry")
    slim = sub.add_parser("enter", help=f"switch to a branch {BRANCH} without the weights the GPU job does not read")
    slim.add_argument("--warm-from", choices=["", "stain"], default="",
                      help="which files the job warm-starts from (bench/gpu_session.sh's WARM_FROM)")
    slim.add_argument("--keep", nargs="*", default=[], help="more tracked weights the job reads")
    slim.add_argument("--carry", nargs="*", default=[".whl", ".gpu"], help="the paths the call will carry")
    sub.add_parser("leave", help="back to the branch `enter` left; its files return")
    args = parser.parse_args(argv)
    root = repository_root(Path.cwd())
    if args.command == "check":
        return 0 if report(travelling_files(root, args.carry), args.carry) else 1
    if args.command == "enter":
        return enter(root, args.warm_from, args.keep, args.carry)
    return leave(root)


if __name__ == "__main__":
    sys.exit(main())
