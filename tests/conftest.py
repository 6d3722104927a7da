"""Shared test fixtures: the bundled sample, quiet TensorFlow, tiny configs."""

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stage1_train"


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
