"""Atomic writes leave the old file or the new one, never half of one; killed writers' leftovers are found."""

import pytest

from preprocessing.files import (atomic_target, is_temporary, remove_stale_temporaries, save_json_atomic,
                                 write_text_atomically)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    save_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_target(target) as temp:
            temp.write_text('{"a": 2, "half')
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_temporaries_of_every_writer_are_recognised(tmp_path):
    names = []
    for suffix in (".tmp", ".weights.h5", ".npz"):
        with pytest.raises(RuntimeError):
            with atomic_target(tmp_path / f"x{suffix}", suffix=suffix) as temp:
                names.append(temp.name)
                raise RuntimeError
    assert all(is_temporary(name) for name in names)
    legacy = [".state.json.tmp", ".log.csv.k2j3.tmp", ".last.weights.h5.k2j3.weights.h5"]
    assert all(is_temporary(name) for name in legacy)
    kept = ["last.weights.h5", "state.json", ".gitignore", ".hidden.weights.h5", "log.csv", "tmp.txt"]
    assert not any(is_temporary(name) for name in kept)


def test_remove_stale_temporaries_deletes_only_killed_writers_leftovers(tmp_path):
    leftovers = [".last.weights.h5.partial.abc.weights.h5", ".last.optimizer.npz.partial.q1.npz",
                 ".state.json.partial.zz.tmp", ".state.json.tmp"]
    real = ["last.weights.h5", "state.json", ".gitignore"]
    for name in leftovers + real:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".a.json.partial.b.tmp").write_text("x")  # other folders are not touched
    assert remove_stale_temporaries(tmp_path) == len(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(real + ["sub"])
    assert (tmp_path / "sub" / ".a.json.partial.b.tmp").exists()
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_write_text_atomically_replaces_the_whole_file(tmp_path):
    target = tmp_path / "t.txt"
    write_text_atomically(target, "long old text\n")
    write_text_atomically(target, "new\n")
    assert target.read_text() == "new\n"
