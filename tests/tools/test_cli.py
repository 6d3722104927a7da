"""tools.cli / tools.quiet / tools.progress: quiet start-up, --verbose / --quiet on every command."""

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import progress
from tools.cli import add_output_flags, run_command
from tools.quiet import filtered_native_stderr, is_chatter

ROOT = Path(__file__).resolve().parents[2]
ONEDNN = ("I0000 00:00:1796116139.106556   13148 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results due to floating-point round-off errors.")
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUDA = ("E0000 00:00:1718888888.123456   42 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to "
        "register factory for plugin cuDNN when one has already been registered")
REAL_ERROR = "E0000 00:00:1796116139.1 42 op_kernel.cc:1830] OP_REQUIRES failed at conv_ops.cc:1: OOM"

# a command through run_command whose work is importing TensorFlow (as every model command does)
TOY_COMMAND = """
import argparse, os, sys
from tools.cli import run_command
def command(args):
    import tensorflow
    print("TF_CPP_MIN_LOG_LEVEL=" + os.environ.get("TF_CPP_MIN_LOG_LEVEL", ""))
sys.exit(run_command(argparse.ArgumentParser, command))
"""


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_chatter_is_told_from_real_errors():
    assert all(is_chatter(line) for line in (ONEDNN, ABSL, CUDA + "\n"))
    assert is_chatter("To enable the following instructions: AVX2 FMA, in other operations, rebuild "
                      "TensorFlow with the appropriate compiler flags.")
    assert not is_chatter(REAL_ERROR)
    assert not is_chatter("Traceback (most recent call last):")


def test_native_stderr_keeps_real_lines_and_gives_everything_back_on_failure(capfd):
    with filtered_native_stderr():
        os.write(2, f"{ABSL}\n{ONEDNN}\n{REAL_ERROR}\n".encode())
    assert capfd.readouterr().err == REAL_ERROR + "\n"
    with pytest.raises(ImportError):
        with filtered_native_stderr():
            os.write(2, f"{ONEDNN}\n".encode())
            raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
    assert capfd.readouterr().err == ONEDNN + "\n"


def test_every_command_and_sub_command_takes_verbose_and_quiet():
    def build():
        parser = argparse.ArgumentParser()
        models = parser.add_subparsers(dest="model", required=True)
        models.add_parser("unet").add_argument("--epochs", type=int)
        return parser

    parser = add_output_flags(build())
    assert vars(parser.parse_args(["unet"])) == {"model": "unet", "epochs": None, "verbose": False, "quiet": False}
    assert parser.parse_args(["--verbose", "unet"]).verbose  # before the sub-command: not reset by it
    after = parser.parse_args(["unet", "--quiet", "--epochs", "2"])
    assert after.quiet and not after.verbose and after.epochs == 2


def test_quiet_turns_every_progress_bar_off():
    seen = {}
    assert run_command(argparse.ArgumentParser, lambda args: seen.update(on=progress.enabled()), ["--quiet"]) == 0
    assert seen["on"] is False
    run_command(argparse.ArgumentParser, lambda args: seen.update(on=progress.enabled()), [])
    assert seen["on"] is True


def test_progress_bar_shows_images_per_second_and_eta_on_a_terminal_only():
    terminal = Terminal()
    assert list(progress.progress(iter(range(3)), "predicting", total=3, file=terminal)) == [0, 1, 2]
    shown = terminal.getvalue()
    assert "predicting" in shown and "3/3" in shown and "img/s" in shown and "<00:00" in shown
    log = io.StringIO()  # not a terminal: no bar
    list(progress.progress([1, 2], "predicting", file=log))
    assert log.getvalue() == ""
    items = [1, 2]
    progress.set_enabled(False)
    try:
        assert progress.progress(items, "predicting", file=terminal) is items
    finally:
        progress.set_enabled(True)


def run_python(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_tensorflow_start_up_is_silent_unless_verbose():
    bare = run_python("-c", "import tensorflow")
    chatter = [line for line in bare.stderr.splitlines() if is_chatter(line)]
    quiet = run_python("-c", TOY_COMMAND)
    assert quiet.returncode == 0, quiet.stderr
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr, quiet.stderr
    assert quiet.stderr.strip() == ""
    assert "TF_CPP_MIN_LOG_LEVEL=2" in quiet.stdout
    verbose = run_python("-c", TOY_COMMAND, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "TF_CPP_MIN_LOG_LEVEL=0" in verbose.stdout
    assert all(line.split("]")[-1] in verbose.stderr for line in chatter)  # what a bare import says, back
