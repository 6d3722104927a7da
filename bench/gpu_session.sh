#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (issue 9: retrain both shipped models). Fits one
# device call (600 s): the U-Net and the Mask R-CNN train side by side on the one GPU for BUDGET
# seconds each, warm-started from the shipped weights (training adds up across sessions), on the
# community-fixed masks, with stain augmentation, on the shipped models' split (weights/split.json)
# so that old and new models are compared on the same 64 validation images neither saw.
# (--augment stain ranked first of five training options under the domain hold-out in small CPU
# runs, bench/domain_ablation.py; heavy, which trained the shipped U-Net, was below it everywhere.)
#
# The GPU machines have PyTorch and JAX but no TensorFlow. The U-Net trains under Keras' JAX
# backend (UNET_BACKEND, default jax: the whole train step XLA-compiled, where eager PyTorch was
# the bottleneck; checked on CPU here: trains with process workers, and its weights predict the
# same under TensorFlow to 1e-6), falling back to torch when JAX has no GPU or the job fails
# before its first checkpoint. The Mask R-CNN trains under torch (MRCNN_BACKEND; its train step
# has no JAX form yet). The weights load unchanged under TensorFlow. Carry, from the developer
# machine (both git-ignored):
#   .whl/                    wheels for Python 3.12 the GPU machine lacks (keras, namex, optree,
#                            imgaug, shapely): python bench/make_gpu_pack.py --wheels .whl
#   .gpu/fixed_labels/       the fixed training set minus the bundled sample, compact layout:
#                            python3 ../shared/dsb2018/make_fixed.py /tmp/fixed &&
#                            python bench/make_gpu_pack.py --data /tmp/fixed --out .gpu/fixed_labels
# Then: run(command="OUT=$OUT bash bench/gpu_session.sh 420", carry=[".whl", ".gpu"], timeout_s=600)
# What travels must stay under 64 MiB: tracked files 36.7 MB + the pack 20.3 MB + wheels 6.9 MB
# = 60.9 MiB (2026-12-01); a larger shipped file needs a smaller pack.
# Back here: weights in $OUT/{unet,mrcnn}.weights.h5 (float16 values, + .json, logs; the split is
# weights/split.json less the ids the fixes drop); score and ship them with
#   python -m tools.evaluate / bench/protocols.py, python -m tools.tune (cross-domain check),
#   (see bench/RESULTS.md, "Retraining").
set -uo pipefail
BUDGET=${1:-420}
OUT=${OUT:-runs/gpu_out}
DATA=${DATA:-.gpu/fixed_labels}
UNET_LR=${UNET_LR:-0.001}
MRCNN_LR=${MRCNN_LR:-0.0005}
mkdir -p "$OUT" runs
UNET_BACKEND=${UNET_BACKEND:-jax}
MRCNN_BACKEND=${MRCNN_BACKEND:-torch}
export KERAS_BACKEND=$MRCNN_BACKEND PYTHONUNBUFFERED=1
# (find_spec, not import: imgaug does not import on NumPy 2 without preprocessing.imgaug_compat)
if [ -d .whl ] && ! python3 -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('keras', 'imgaug')))"; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-$PWD}
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
python3 -c "import keras; print('keras', keras.__version__, 'backend', keras.backend.backend())" || exit 3
# (JAX_GPU_CHECK=0: a dry run of the JAX path on a CPU)
if [ "$UNET_BACKEND" = jax ] && [ "${JAX_GPU_CHECK:-1}" = 1 ] \
   && ! KERAS_BACKEND=jax python3 -c "import jax, keras; assert jax.devices('gpu')" 2>/dev/null; then
  echo "JAX has no GPU here: the U-Net trains under torch"; UNET_BACKEND=torch
fi

COMMON=(--data "$DATA" --split weights/split.json --augment stain --epochs 10000
        --workers 7 --multiprocessing --no-val-score --export last)
rm -rf runs/gpu_unet runs/gpu_mrcnn
# each job is capped (timeout) so that the copying below always runs inside the call's limit
train_unet() {  # $1 backend, $2 budget seconds
  KERAS_BACKEND=$1 timeout $(($2 + 100)) python3 -m tools.train unet --out runs/gpu_unet "${COMMON[@]}" --time-limit "$2" \
    --config weights/unet.json --warm-start weights/unet.weights.h5 --learning-rate "$UNET_LR" \
    --batch-size 16 --steps-per-epoch 200 >> "$OUT/unet.log" 2>&1
}
STARTED=$SECONDS
: > "$OUT/unet.log"
# JAX takes 75 % of the GPU's memory by default; the Mask R-CNN shares the GPU
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
( train_unet "$UNET_BACKEND" "$BUDGET"
  status=$?
  left=$((BUDGET - (SECONDS - STARTED) - 20))
  if [ $status -ne 0 ] && [ "$UNET_BACKEND" = jax ] && [ ! -f runs/gpu_unet/last.weights.h5 ] && [ $left -gt 60 ]; then
    echo "U-Net under JAX failed (exit $status) before a checkpoint: torch for the ${left} s left" >> "$OUT/unet.log"
    rm -rf runs/gpu_unet; train_unet torch "$left"; status=$?
  fi
  exit $status ) &
UNET=$!
KERAS_BACKEND=$MRCNN_BACKEND timeout $((BUDGET + 100)) python3 -m tools.train mrcnn --out runs/gpu_mrcnn "${COMMON[@]}" \
  --time-limit "$BUDGET" \
  --config weights/mrcnn.json --warm-start weights/mrcnn.weights.h5 --learning-rate "$MRCNN_LR" \
  --images-per-gpu 8 --steps-per-epoch 100 --validation-steps 4 > "$OUT/mrcnn.log" 2>&1 &
MRCNN=$!
wait $UNET; echo "unet exit $?"
wait $MRCNN; echo "mrcnn exit $?"
# What comes back: at most 8 files of at most 16 MiB each. Float32 weights are over that (U-Net
# 16.8 MB, Mask R-CNN 27.7 MB): they travel as float16 values, as weights/ ships them.
for model in unet mrcnn; do
  run=runs/gpu_$model
  weights=$run/model.weights.h5 name=$model.weights.h5
  if [ ! -f "$weights" ] && [ -f "$run/last.weights.h5" ]; then  # stopped before export: the checkpoint still counts
    weights=$run/last.weights.h5 name=$model.last.weights.h5
  fi
  if [ -f "$weights" ]; then
    python3 -m tools.half_weights "$weights" "$OUT/$name" || echo "could not halve $weights"
    if [ -f "$run/model.json" ]; then cp "$run/model.json" "$OUT/$model.json"; else cp "$run/config.json" "$OUT/$model.json"; fi
  fi
  cp "$run/log.csv" "$OUT/$model.log.csv" 2>/dev/null
  tail -3 "$OUT/$model.log"
done
ls -la "$OUT"
