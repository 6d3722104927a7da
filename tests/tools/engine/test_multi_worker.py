"""Two workers on this machine train one run under MultiWorkerMirroredStrategy.

Each worker is a ``python -m tools.train ... --multi-worker`` process with its own ``TF_CONFIG``
(two localhost ports, CPU only), as a cluster manager would start them on two machines. Each
prints a digest of its final weights: equal digests mean the workers trained in lockstep.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.tools.test_train import TINY

DIGEST = re.compile(r"weights digest ([0-9a-f]{16})")


def free_ports(count: int) -> list[int]:
    """Ports free now; all sockets stay bound until each has its port, so the ports differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(argv: list[str], count: int = 2, timeout: float = 300) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each worker of ``python -m tools.train *argv`` on a fresh cluster."""
    hosts = [f"localhost:{port}" for port in free_ports(count)]
    procs = []
    for index in range(count):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": "",
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(subprocess.Popen([sys.executable, "-m", "tools.train", *argv, "--multi-worker", "--threads", "1"],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:  # a worker left waiting for a dead peer
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def digests(results: list[tuple[int, str, str]]) -> list[str]:
    for code, out, err in results:
        assert code == 0, (out[-1500:], err[-3000:])
    found = [DIGEST.findall(out) for _, out, _ in results]
    assert all(len(f) == 1 for f in found), found
    return [f[0] for f in found]


def test_unet_workers_train_in_lockstep_and_resume_from_the_chiefs_checkpoint(tmp_path: Path, small_sample_root):
    run = tmp_path / "run"
    argv = ["unet", "--data", str(small_sample_root), *TINY, "--out", str(run), "--no-val-score"]
    first = run_workers(argv + ["--epochs", "1"])
    first_digests = digests(first)
    assert first_digests[0] == first_digests[1]
    chief, other = first[0][1], first[1][1]
    assert "the chief: writes the run folder" in chief and "the chief writes the run folder" in other
    assert "2 replicas x 2 = global batch 4; learning rate 0.001 -> 0.002" in chief  # TINY: --batch-size 2
    assert "model:" in chief and "model:" not in other  # only the chief exports
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert json.loads((run / "config.json").read_text())["config"]["batch_size"] == 2  # per replica, as given

    second = run_workers(argv + ["--epochs", "2", "--resume"])
    second_digests = digests(second)
    assert second_digests[0] == second_digests[1] != first_digests[0]
    for _, out, _ in second:  # every worker starts from the chief's checkpoint, not from scratch
        assert f"resumed from {run / 'last.weights.h5'} at epoch 1" in out
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3  # header + one row per epoch
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_mrcnn_workers_build_and_take_a_step_in_lockstep(tmp_path: Path, small_sample_root):
    run = tmp_path / "run"
    results = run_workers(["mrcnn", "--data", str(small_sample_root), "--out", str(run), "--config", "tiny",
                           "--epochs", "1", "--steps-per-epoch", "1", "--crop-size", "64", "--images-per-gpu", "1",
                           "--val-fraction", "0", "--no-val-score"])
    found = digests(results)
    assert found[0] == found[1]
    assert "2 replicas x 1 = global batch 2" in results[0][1]
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert (run / "model.weights.h5").is_file()
