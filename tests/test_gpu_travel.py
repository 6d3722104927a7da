"""bench/gpu_travel.py on a throwaway repository: the slim branch drops only the weights a GPU job
does not read, `leave` brings every file back, and the size check counts what travels."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_travel.py"
WEIGHTS = ("unet.weights.h5", "unet.stain.weights.h5", "mrcnn.weights.h5", "mrcnn.stain.weights.h5",
           "mobilenetv2_imagenet.weights.h5")


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def travel(repo, *args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "weights").mkdir(parents=True)
    for i, name in enumerate(WEIGHTS):
        (repo / "weights" / name).write_bytes(bytes([i]) * 1000)
    (repo / "weights" / "unet.json").write_text("{}")
    (repo / "code.py").write_text("print(1)\n")
    (repo / ".gitignore").write_text(".gpu/\n")
    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "pack.bin").write_bytes(b"x" * 500)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@t")
    return repo


def present(repo):
    return sorted(p.name for p in (repo / "weights").iterdir())


def test_enter_keeps_the_warm_start_files_and_leave_restores_all(repo):
    done = travel(repo, "enter", "--carry", ".gpu")
    assert done.returncode == 0, done.stderr
    assert present(repo) == ["mrcnn.weights.h5", "unet.json", "unet.weights.h5"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "gpu-travel"
    assert "mrcnn.stain.weights.h5" not in git(repo, "ls-files")  # gone from HEAD and index too
    assert "travels: " in done.stdout and "fits" in done.stdout
    done = travel(repo, "leave")
    assert done.returncode == 0, done.stderr
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert present(repo) == sorted(list(WEIGHTS) + ["unet.json"])
    assert (repo / "weights" / "unet.stain.weights.h5").read_bytes() == bytes([1]) * 1000
    assert "gpu-travel" not in git(repo, "branch", "--list")


def test_warm_from_stain_keeps_the_stain_files(repo):
    assert travel(repo, "enter", "--warm-from", "stain", "--carry", ".gpu").returncode == 0
    assert present(repo) == ["mrcnn.stain.weights.h5", "unet.json", "unet.stain.weights.h5"]
    assert travel(repo, "leave").returncode == 0
    assert len(present(repo)) == len(WEIGHTS) + 1


def test_enter_refuses_uncommitted_changes(repo):
    (repo / "code.py").write_text("print(2)\n")
    done = travel(repo, "enter", "--carry", ".gpu")
    assert done.returncode != 0 and "uncommitted" in done.stderr
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_check_counts_tracked_untracked_and_carried_files(repo):
    (repo / "notes.txt").write_text("n" * 100)  # untracked, not ignored: travels
    (repo / ".gpu" / "more.bin").write_bytes(b"y" * 50)  # ignored: travels only when carried
    out = travel(repo, "check").stdout
    expected = 5 * 1000 + 2 + 9 + 6 + 100  # weights, unet.json, code.py, .gitignore, notes.txt
    assert f"({len(WEIGHTS) + 4} files, {expected} bytes)" in out
    out = travel(repo, "check", "--carry", ".gpu").stdout
    assert f"({len(WEIGHTS) + 6} files, {expected + 550} bytes)" in out


def test_check_fails_over_the_limit(repo):
    big = repo / ".gpu" / "big.bin"
    with open(big, "wb") as f:
        f.truncate(65 * 2 ** 20)  # sparse: no real disk use
    done = travel(repo, "check", "--carry", ".gpu")
    assert done.returncode == 1 and "TOO LARGE" in done.stdout


def test_leave_refuses_to_delete_commits_made_on_the_travel_branch(repo):
    assert travel(repo, "enter", "--carry", ".gpu").returncode == 0
    (repo / "code.py").write_text("print(3)\n")
    git(repo, "commit", "-q", "-am", "work on the wrong branch")
    done = travel(repo, "leave")
    assert done.returncode != 0 and "did not make" in done.stderr
    assert "gpu-travel" in git(repo, "branch", "--list")  # nothing deleted
