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
