#!/usr/bin/env bash
# StarDist for bench/side_by_side.py, in its own virtual environment: it needs TensorFlow 2.15
# and its tf.keras, which cannot live beside this project's Keras 3.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-stardist
.venv-stardist/bin/pip install -q "tensorflow-cpu>=2.15,<2.16" "stardist==0.9.1"
.venv-stardist/bin/python -c "import stardist; print('StarDist', stardist.__version__, 'in .venv-stardist')"
