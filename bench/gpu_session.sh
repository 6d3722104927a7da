#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (issue 9: retrain both shipped models). Fits one
# device call (600 s): the U-Net and the Mask R-CNN train side by side on the one GPU for BUDGET
# seconds each, warm-started from the shipped weights (training adds up across sessions), on the
# community-fixed masks, with stain augmentation, on the shipped models' split (weights/split.json)
# so that old and new models are compared on the same 64 validation images neither saw.
# (--augment stain ranked first of five training options under the domain hold-out in small CPU
# runs, bench/domain_ablation.py; heavy, which trained the shipped U-Net, was below it everywhere.)
#
# The GPU machines have PyTorch and JAX but no TensorFlow: Keras 3 runs on KERAS_BACKEND (torch
# by default, the backend both models have trained under before); the weights load unchanged
# under TensorFlow. Carry, from the developer machine (both git-ignored):
#   .whl/                    wheels for Python 3.12 the GPU machine lacks (keras, namex, optree,
#                            imgaug, shapely): python bench/make_gpu_pack.py --wheels .whl
#   .gpu/fixed_labels/       the fixed training set minus the bundled sample, compact layout:
#                            python3 ../shared/dsb2018/make_fixed.py /tmp/fixed &&
#                            python bench/make_gpu_pack.py --data /tmp/fixed --out .gpu/fixed_labels
# Then: run(command="OUT=$OUT bash bench/gpu_session.sh 420", carry=[".whl", ".gpu"], timeout_s=600)
# Back here: weights in $OUT/{unet,mrcnn}.weights.h5 (+ .json, logs); score and ship them with
#   python -m tools.evaluate / bench/protocols.py, python -m tools.tune (cross-domain check),
#   python -m tools.half_weights (see bench/RESULTS.md, "Retraining").
set -uo pipefail
BUDGET=${1:-420}
OUT=${OUT:-runs/gpu_out}
DATA=${DATA:-.gpu/fixed_labels}
UNET_LR=${UNET_LR:-0.001}
MRCNN_LR=${MRCNN_LR:-0.0005}
mkdir -p "$OUT" runs
export KERAS_BACKEND=${KERAS_BACKEND:-torch} PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import keras, imgaug" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
python3 -c "import keras; print('keras', keras.__version__, 'backend', keras.backend.backend())" || exit 3

COMMON=(--data "$DATA" --split weights/split.json --augment stain --epochs 10000 --time-limit "$BUDGET"
        --workers 7 --multiprocessing --no-val-score --export last)
rm -rf runs/gpu_unet runs/gpu_mrcnn
# each job is capped (timeout) so that the copying below always runs inside the call's limit
timeout $((BUDGET + 100)) python3 -m tools.train unet --out runs/gpu_unet "${COMMON[@]}" \
  --config weights/unet.json --warm-start weights/unet.weights.h5 --learning-rate "$UNET_LR" \
  --batch-size 16 --steps-per-epoch 200 > "$OUT/unet.log" 2>&1 &
UNET=$!
timeout $((BUDGET + 100)) python3 -m tools.train mrcnn --out runs/gpu_mrcnn "${COMMON[@]}" \
  --config weights/mrcnn.json --warm-start weights/mrcnn.weights.h5 --learning-rate "$MRCNN_LR" \
  --images-per-gpu 8 --steps-per-epoch 100 --validation-steps 4 > "$OUT/mrcnn.log" 2>&1 &
MRCNN=$!
wait $UNET; echo "unet exit $?"
wait $MRCNN; echo "mrcnn exit $?"
for model in unet mrcnn; do
  run=runs/gpu_$model
  if [ -f "$run/model.weights.h5" ]; then
    cp "$run/model.weights.h5" "$OUT/$model.weights.h5"; cp "$run/model.json" "$OUT/$model.json"
  elif [ -f "$run/last.weights.h5" ]; then  # stopped before export: the checkpoint still counts
    cp "$run/last.weights.h5" "$OUT/$model.last.weights.h5"; cp "$run/config.json" "$OUT/$model.json"
  fi
  cp "$run/log.csv" "$OUT/$model.log.csv" 2>/dev/null
  cp "$run/split.json" "$OUT/$model.split.json" 2>/dev/null
  tail -3 "$OUT/$model.log"
done
ls -la "$OUT"
