#!/usr/bin/env bash
# One prepared run on a lent GPU machine that has PyTorch but no TensorFlow (Keras 3 on its
# PyTorch backend; the weights files load unchanged under TensorFlow):
#   1. the Mask R-CNN (MobileNetV2-FPN, ImageNet backbone from weights/) for MRCNN_SECONDS;
#   2. beside it, the CLAHE-vs-plain U-Net comparison (issue #2): two U-Nets, same split and
#      budget, plain RGB vs CLAHE input, each ending with its validation DSB score.
# Needs, carried from the developer machine: .whl/ (keras, namex, optree, imgaug, shapely wheels
# for Python 3.12) and .gpu/stage1_train_labels/ (training set minus the bundled sample, compact
# labels layout; see weights/README.md). Results land in $OUT (or ./runs/gpu_out).
# Usage: bash bench/gpu_train_mrcnn.sh [MRCNN_SECONDS] [UNET_SECONDS]
set -uo pipefail
MRCNN_SECONDS=${1:-420}
UNET_SECONDS=${2:-330}
OUT=${OUT:-runs/gpu_out}
DATA=${DATA:-.gpu/stage1_train_labels}
LOGS=runs/gpu_logs
mkdir -p "$OUT" "$LOGS"
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
python3 -c "import keras, torch; print('keras', keras.__version__, 'torch', torch.__version__, torch.cuda.is_available())"

rm -rf runs/gpu_mrcnn runs/norm_plain runs/norm_clahe
# each job is capped (timeout) so that the packing below always runs inside the call's limit
timeout $((MRCNN_SECONDS + 120)) python3 -m tools.train mrcnn --data "$DATA" --out runs/gpu_mrcnn --config nucleus --backbone mobilenetv2 \
  --alpha 1.0 --backbone-weights weights/mobilenetv2_imagenet.weights.h5 --crop-size 256 --images-per-gpu 8 \
  --layers all --learning-rate 0.001 --val-fraction 0.1 --seed 0 --epochs 10000 --steps-per-epoch 100 \
  --validation-steps 4 --time-limit "$MRCNN_SECONDS" --workers 7 --multiprocessing --no-val-score \
  > "$LOGS/mrcnn.log" 2>&1 &
MRCNN_PID=$!
for norm in plain clahe; do
  timeout $((UNET_SECONDS + 150)) python3 -m tools.train unet --data "$DATA" --out runs/norm_$norm --normalization $norm \
    --base-filters 32 --max-filters 192 --depth 4 --crop-size 256 --batch-size 16 --learning-rate 0.002 \
    --augment heavy --val-fraction 0.1 --seed 0 --epochs 10000 --steps-per-epoch 100 \
    --time-limit "$UNET_SECONDS" --workers 4 --multiprocessing > "$LOGS/unet_$norm.log" 2>&1 &
done
# progress while waiting (the reply keeps the tail of this)
while kill -0 $MRCNN_PID 2>/dev/null; do
  sleep 60
  echo "--- $(date +%T)"; tail -c 400 "$LOGS/mrcnn.log" | tr '\r' '\n' | tail -2
done
wait
for norm in plain clahe; do
  echo "== unet $norm"; grep -E "validation DSB|trained|Error" "$LOGS/unet_$norm.log"
  cp runs/norm_$norm/val_score.json "$LOGS/unet_${norm}_val_score.json" 2>/dev/null
done
echo "== mrcnn"; grep -E "trained|Error|error" "$LOGS/mrcnn.log" | tail -5
cp runs/gpu_mrcnn/config.json runs/gpu_mrcnn/model.json runs/gpu_mrcnn/split.json runs/gpu_mrcnn/*.csv "$LOGS/" 2>/dev/null
# few, small files come back: logs in one archive, the weights in 15 MB parts (cat them together)
tar czf "$OUT/logs.tgz" "$LOGS"
if [ ! -f runs/gpu_mrcnn/model.weights.h5 ] && [ -f runs/gpu_mrcnn/last.weights.h5 ]; then  # cut off: export the last epoch
  python3 -c "from pathlib import Path; from mrcnn.config import Config; from tools.engine.tasks import MrcnnTask; \
MrcnnTask(Config.load('runs/gpu_mrcnn/config.json')).export(Path('runs/gpu_mrcnn/last.weights.h5'), Path('runs/gpu_mrcnn/model'))"
fi
if [ -f runs/gpu_mrcnn/model.weights.h5 ]; then
  split -b 15M runs/gpu_mrcnn/model.weights.h5 "$OUT/mrcnn.weights.h5.part_"
fi
ls -la "$OUT"
