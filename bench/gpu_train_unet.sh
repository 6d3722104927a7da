#!/usr/bin/env bash
# Train the shipped U-Net on a lent GPU machine that has PyTorch but no TensorFlow:
# Keras 3 runs on its PyTorch backend there; the weights load unchanged under TensorFlow.
# Needs, carried from the developer machine: .whl/ (keras, namex, optree, imgaug, shapely
# wheels for Python 3.12) and .gpu/stage1_train_labels/ (the training set minus the bundled
# sample, in the compact labels layout; see weights/README.md).
# Usage: bash bench/gpu_train_unet.sh SECONDS OUTDIR
set -euo pipefail
SECONDS_BUDGET=${1:-420}
OUTDIR=${2:-runs/gpu_unet}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=torch PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import keras, torch; print('keras', keras.__version__, 'torch', torch.__version__, torch.cuda.is_available())"
python3 -m tools.train unet --data .gpu/stage1_train_labels --out "$OUTDIR" \
  --base-filters 32 --max-filters 192 --depth 4 --crop-size 256 --batch-size 16 --learning-rate 0.002 \
  --augment heavy --val-fraction 0.1 --seed 0 --epochs 10000 --steps-per-epoch 200 \
  --time-limit "$SECONDS_BUDGET" --workers 15 --multiprocessing
