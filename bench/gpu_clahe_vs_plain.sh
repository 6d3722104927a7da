#!/usr/bin/env bash
# Does CLAHE (L of LAB + H of HSV) help the U-Net? Same network, same split, same time budget,
# plain RGB vs CLAHE input; each run ends with its validation DSB score (val_score.json).
# For a lent GPU machine without TensorFlow (Keras on its PyTorch backend), carrying .whl/ and
# .gpu/stage1_train_labels/ as bench/gpu_train_unet.sh does. Usage: bash bench/gpu_clahe_vs_plain.sh SECONDS
set -euo pipefail
SECONDS_EACH=${1:-200}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=torch PYTHONUNBUFFERED=1
for norm in plain clahe; do
  python3 -m tools.train unet --data .gpu/stage1_train_labels --out runs/norm_$norm --normalization $norm \
    --base-filters 32 --max-filters 192 --depth 4 --crop-size 256 --batch-size 16 --learning-rate 0.002 \
    --augment heavy --val-fraction 0.1 --seed 0 --epochs 10000 --steps-per-epoch 100 \
    --time-limit "$SECONDS_EACH" --workers 15 --multiprocessing 2>&1 | grep -E "validation DSB|trained"
done
