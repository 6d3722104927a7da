"""Shared test fixtures: the bundled sample, quiet TensorFlow, tiny configs."""

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stage1_train"

# About how many seconds each long test file takes on the 2-core CI machine (`--durations`, session
# 26). `make test` gives each process a whole file (pytest-xdist --dist loadfile
# --no-loadscope-reorder) in collection order, so these files are collected first, longest first,
# and the short ones fill the gaps: a long file started last would run alone at the end.
LONG_FILES = {
    "tests/tools/test_train.py": 170,
    "tests/tools/engine/test_multi_worker.py": 115,
    "tests/tools/test_shard_resume.py": 100,
    "tests/tools/test_train_mrcnn.py": 95,
    "tests/test_examples.py": 90,
    "tests/mrcnn/test_jax_backend.py": 80,
    "tests/tools/test_export.py": 75,
    "tests/mrcnn/test_learning.py": 65,
    "tests/mrcnn/test_mask_resolution.py": 55,
    "tests/mrcnn/test_cascade_learning.py": 50,
    "tests/tools/test_faults.py": 40,
    "tests/unet/test_jax_backend.py": 36,
    "tests/tools/test_tune.py": 36,
    "tests/tools/engine/test_distributed.py": 30,
    "tests/unet/test_model.py": 30,
    "tests/tools/inference/test_pipeline.py": 27,
}


def pytest_collection_modifyitems(config, items):
    """Run the files of LONG_FILES first, longest first; the rest keep their order (the sort is
    stable, so each file's tests stay together)."""
    def cost(item):
        path = Path(item.path).resolve()
        return LONG_FILES.get(path.relative_to(ROOT).as_posix(), 0) if path.is_relative_to(ROOT) else 0

    items.sort(key=lambda item: -cost(item))


@pytest.fixture(scope="session")
def sample_dataset():
    from preprocessing.dataset import load_dataset

    return load_dataset(SAMPLE)


@pytest.fixture(scope="session")
def sample_root():
    return SAMPLE


# Small images of two types (no 1024x1024 brightfield), for end-to-end runs that must be quick.
SMALL_SAMPLE_IDS = (
    "dae976f161fe42dc58dee87d4bf2eb9f65736597cab0114138641b2a39a5c42b",  # fluorescence 256x256
    "309ba76b12ecb5ce28b99f3445b2b5dc54c0564c3c0e24c17e4c89a94a5d0535",  # fluorescence 256x256
    "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",  # fluorescence 256x256
    "709e094e39629a9ca21e187f007b331074694e443db40289447c1111f7e267e7",  # histology 256x320
    "92f31f591929a30e4309ab75185c96ff4314ce0a7ead2ed2c2171897ad1da0c7",  # histology 256x320
)


@pytest.fixture(scope="session")
def small_sample_root(tmp_path_factory):
    """A copy of five small bundled images (Kaggle layout) in a temporary folder."""
    import shutil

    root = tmp_path_factory.mktemp("small_sample")
    for image_id in SMALL_SAMPLE_IDS:
        shutil.copytree(SAMPLE / image_id, root / image_id)
    return root
