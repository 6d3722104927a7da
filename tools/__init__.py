"""Commands (``python -m tools.X``: train, predict, evaluate, tune, demo, export, convert_weights,
half_weights; their shared main is tools.cli, with tools.quiet and tools.progress) on top of the
model-independent library below them:

    tools.kaggle       rle, metric, submission, scoring
    tools.inference    params, models (load_model), pipeline, tta, tiling, merge, postprocess,
                       ensemble, overlay, contact_sheet, folder, tuning, export
    tools.engine       the training loop of both models: trainer, tasks, callbacks, distribute
    tools.weightfiles  torchvision checkpoint conversion, float16 storage

A command only parses arguments and calls the library; no module imports a command.
"""

import os

# TensorFlow's C++ warnings (graph cost-model notes on CropAndResize, CPU feature notes) are
# noise for a command-line user; errors still show. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
