"""Command-line tools and the model-independent library: RLE, metric, submission, TTA, post-processing."""

import os

# TensorFlow's C++ warnings (graph cost-model notes on CropAndResize, CPU feature notes) are
# noise for a command-line user; errors still show. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
