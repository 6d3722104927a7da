"""tools.predict --shard / --resume and tools.merge_submissions on the bundled sample (shipped U-Net).

One whole run and one 3-way split are made once per module; the tests compare against them.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, SAMPLE

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def predict(out, *extra):
    """tools.predict in this process: (exit status, stdout, stderr)."""
    from tools.predict import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--images", str(SAMPLE), "--out", str(out), "--no-overlays", "--quiet", *map(str, extra)])
    return code, stdout.getvalue(), stderr.getvalue()


def merge(out, *sources):
    from tools.merge_submissions import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(out), *map(str, sources)])
    return code, stdout.getvalue(), stderr.getvalue()


def rows(path):
    return path.read_text().splitlines()


def one_error_line(code, err, *words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "out"
    code, _, err = predict(out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    outs = []
    for index in (1, 2, 3):
        out = folder / f"s{index}"
        code, said, err = predict(out, "--shard", f"{index}/3")
        assert code == 0, err
        assert f"shard {index}/3: 4 of 12 images" in said
        outs.append(out)
    return outs


def test_three_shards_merged_give_exactly_the_rows_of_the_whole_run(full_run, shards, tmp_path):
    ids = sorted(p.name for p in SAMPLE.iterdir())
    for index, out in enumerate(shards, start=1):
        manifest = json.loads((out / "run.json").read_text())
        assert manifest["finished"] and manifest["shard"] == {"index": index, "count": 3}
        assert manifest["ids"] == ids[index - 1::3]  # every third of the sorted ids
        assert {row.split(",")[0] for row in rows(out / "submission.csv")[1:]} == set(ids[index - 1::3])
        assert sorted(p.stem for p in (out / "labels").glob("*.png")) == ids[index - 1::3]
    code, said, err = merge(tmp_path / "merged.csv", *reversed(shards))
    assert code == 0, err
    assert "merged 3 shards" in said and "12 images" in said
    merged, whole = rows(tmp_path / "merged.csv"), rows(full_run / "submission.csv")
    assert merged[0] == "ImageId,EncodedPixels" and len(merged) > 13
    assert sorted(merged) == sorted(whole) and merged == whole  # same rows, same order


def test_merge_refuses_a_missing_shard_a_duplicated_image_and_overlapping_nuclei(shards, tmp_path):
    out = tmp_path / "merged.csv"
    code, _, err = merge(out, shards[0], shards[2])
    one_error_line(code, err, "shard 2/3 is missing")

    first = rows(shards[0] / "submission.csv")
    second = rows(shards[1] / "submission.csv")
    (tmp_path / "a.csv").write_text("\n".join(first) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(second + [first[1]]) + "\n")  # one row of a's images in b too
    code, _, err = merge(out, tmp_path / "a.csv", tmp_path / "b.csv")
    one_error_line(code, err, "b.csv", first[1].split(",")[0], "also in")

    image_id, rle = first[1].split(",")
    starts = rle.split()
    shifted = f"{int(starts[0]) + 1} {starts[1]}"  # the first run moved by one pixel: shares pixels
    (tmp_path / "c.csv").write_text("\n".join(first + [f"{image_id},{shifted}"]) + "\n")
    code, _, err = merge(out, tmp_path / "c.csv")
    one_error_line(code, err, "c.csv", image_id, "overlap")
    assert not out.exists()  # nothing written by a refused merge


def test_an_interrupted_run_resumed_writes_the_same_submission_and_skips_what_was_done(full_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(full_run, out)
    records = sorted((out / ".records").glob("*.json"))
    for path in records[:4]:
        path.unlink()  # never finished
    for path in sorted((out / "labels").glob("*.png"))[-2:]:
        path.unlink()  # finished, but its label image is gone: predicted again
    (out / "submission.csv").unlink()
    code, said, err = predict(out, "--resume")
    assert code == 0, err
    assert "resume: 6 of 12 images already done" in said and "predicting 6" in said
    assert (out / "submission.csv").read_bytes() == (full_run / "submission.csv").read_bytes()
    assert len(list((out / "labels").glob("*.png"))) == 12


def test_a_run_killed_with_sigkill_leaves_no_truncated_file_and_resumes_to_the_same_submission(full_run, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tools.predict", "--images", str(SAMPLE), "--out", str(out), "--no-overlays",
               "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list((out / ".records").glob("*.json"))) < 2:
            assert process.poll() is None and time.time() < deadline, "no image finished"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    if process.returncode == -signal.SIGKILL:
        assert not (out / "submission.csv").exists()  # written only at the end
        assert json.loads((out / "run.json").read_text())["finished"] is False
    done = len(list((out / ".records").glob("*.json")))
    for path in (out / "labels").glob("*.png"):  # whole under their own names
        with Image.open(path) as image:
            assert np.asarray(image).ndim == 2
    for path in (out / ".records").glob("*.json"):
        assert "rles" in json.loads(path.read_text())
    code, said, err = predict(out, "--resume")
    assert code == 0, err
    assert f"resume: {done} of 12 images already done" in said
    assert (out / "submission.csv").read_bytes() == (full_run / "submission.csv").read_bytes()
    assert not [p.name for p in out.rglob(".*partial*")]  # temporaries of the killed writer are gone


def test_resume_with_other_settings_is_refused_naming_the_field(full_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(full_run, out)
    manifest = (out / "run.json").read_text()
    code, _, err = predict(out, "--resume", "--tta", "2")
    one_error_line(code, err, "params.tta is 2 now but 1", "--resume")
    code, _, err = predict(out, "--resume", "--shard", "1/2")
    one_error_line(code, err, "shard is '1/2' now but '1/1'")
    assert (out / "run.json").read_text() == manifest and (out / "submission.csv").exists()  # left alone


@pytest.mark.parametrize("shard", ["0/3", "4/3", "2", "a/b"])
def test_a_bad_shard_is_a_usage_error_naming_the_flag(shard, tmp_path, capsys):
    from tools.predict import main

    with pytest.raises(SystemExit) as stopped:
        main(["--images", str(SAMPLE), "--out", str(tmp_path), "--shard", shard])
    assert stopped.value.code == 2 and "--shard" in capsys.readouterr().err


def test_merge_of_a_folder_without_a_submission_names_it(tmp_path):
    (tmp_path / "s1").mkdir()
    code, _, err = merge(tmp_path / "m.csv", tmp_path / "s1")
    one_error_line(code, err, "s1", "holds no submission.csv")
