"""Inference, whatever the model: TTA, tiling, instance merging, ensemble, post-processing.

``from tools.inference import load_model`` is the Python API (see :mod:`tools.inference.models`).
"""

from tools.inference.models import build_pipeline, load_model  # noqa: F401
from tools.inference.params import InferenceParams  # noqa: F401
