#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (issue 9: retrain both shipped models). Fits one
# device call (600 s): the U-Net and the Mask R-CNN train side by side on the one GPU for BUDGET
# seconds each, warm-started from the shipped weights (training adds up across sessions), on the
# community-fixed masks, with stain augmentation, on the shipped models' split (weights/split.json)
# so that old and new models are compared on the same 64 validation images neither saw.
# (--augment stain ranked first of five training options under the domain hold-out in small CPU
# runs, bench/domain_ablation.py; heavy, which trained the shipped U-Net, was below it everywhere.)
#
# The GPU machines have PyTorch and JAX but no TensorFlow. Both models train under Keras' JAX
# backend (UNET_BACKEND, MRCNN_BACKEND, default jax: the whole train step XLA-compiled, where
# eager PyTorch was the bottleneck; the Mask R-CNN's graph has static-shaped forms there, see
# mrcnn/backend_ops.py), each falling back to torch when JAX has no GPU or the job fails before
# its first checkpoint. Checked on CPU here (tests/mrcnn/test_jax_backend.py, and for the U-Net
# session 7's dry run): they train, and their weights predict the same under TensorFlow.
# Carry, from the developer machine (both git-ignored):
#   .whl/                    wheels for Python 3.12 the GPU machine lacks (keras, namex, optree,
#                            imgaug, shapely): python bench/make_gpu_pack.py --wheels .whl
#   .gpu/fixed_labels/       the fixed training set minus the bundled sample, compact layout:
#                            python3 ../shared/dsb2018/make_fixed.py /tmp/fixed &&
#                            python bench/make_gpu_pack.py --data /tmp/fixed --out .gpu/fixed_labels
# What travels must stay under 64 MiB. Since the stain-trained weights ship beside the shipped ones
# the tracked files alone are 60 MB (83 MiB with the pack and the wheels): go to a branch without
# the weights this job does not read (bench/gpu_travel.py; 52 MiB, 2026-12-07), run, come back:
#   python bench/gpu_travel.py enter [--warm-from stain]      (commit your work first)
#   run(command="OUT=$OUT bash bench/gpu_session.sh 420", carry=[".whl", ".gpu"], timeout_s=600)
#   python bench/gpu_travel.py leave
# UNET_EXTRA / MRCNN_EXTRA: more tools.train options for one model, e.g. UNET_EXTRA="--precision
# bfloat16" (1.3x / 1.6x faster training steps on this CPU, not yet measured on a GPU) or
# UNET_EXTRA="--distance-head" (issue 14; a new head: ship it only if it wins, bench/RESULTS.md),
# or MRCNN_EXTRA="--cascade 3 --cascade-from weights/mrcnn.weights.h5" (issue 14). The shipped Mask
# R-CNN has 56-pixel masks since session 29 (weights/mrcnn.json); WARM_FROM=stain turns the 28-pixel
# stain model into one as it loads (nearest-neighbour start, mrcnn.model.warm_start_finer_masks).
# Back here: weights in $OUT/{unet,mrcnn}.weights.h5 (float16 values, + .json, logs; the split is
# weights/split.json less the ids the fixes drop); score and ship them with
#   python -m tools.evaluate / bench/protocols.py, python -m tools.tune (cross-domain check),
#   (see bench/RESULTS.md, "Retraining").
# and score model soups beside them (runs from one start average into one model; the half-half
# soup of two CPU runs was the best Mask R-CNN on the shifted images, bench/RESULTS.md):
#   python -m tools.average_weights soup.weights.h5 weights/mrcnn.weights.h5 $OUT/mrcnn.weights.h5
set -uo pipefail
BUDGET=${1:-420}
OUT=${OUT:-runs/gpu_out}
DATA=${DATA:-.gpu/fixed_labels}
UNET_LR=${UNET_LR:-0.001}
MRCNN_LR=${MRCNN_LR:-0.0005}
mkdir -p "$OUT" runs
UNET_BACKEND=${UNET_BACKEND:-jax}
MRCNN_BACKEND=${MRCNN_BACKEND:-jax}
export PYTHONUNBUFFERED=1
# (find_spec, not import: imgaug does not import on NumPy 2 without preprocessing.imgaug_compat)
if [ -d .whl ] && ! python3 -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('keras', 'imgaug')))"; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-$PWD}
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
# (JAX_GPU_CHECK=0: a dry run of the JAX path on a CPU)
if [ "${JAX_GPU_CHECK:-1}" = 1 ] && ! KERAS_BACKEND=jax python3 -c "import jax, keras; assert jax.devices('gpu')" 2>/dev/null; then
  echo "JAX has no GPU here: the models train under torch"
  [ "$UNET_BACKEND" = jax ] && UNET_BACKEND=torch
  [ "$MRCNN_BACKEND" = jax ] && MRCNN_BACKEND=torch
fi
KERAS_BACKEND=$MRCNN_BACKEND python3 -c "import keras; print('keras', keras.__version__, keras.backend.backend())" || exit 3
# JAX takes 75 % of the GPU's memory by default; the two models share the GPU
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}

# WARM_FROM=stain: warm-start from the stain-trained models (weights/X.stain.weights.h5, which
# predict unfamiliar stained images, tools/inference/routing.py) instead of the shipped ones, so
# that their stain training adds up too; its results replace the X.stain files when they win on the
# shifted colour images of bench/protocols.py
WARM_FROM=${WARM_FROM:-}
COMMON=(--data "$DATA" --split weights/split.json --augment stain --epochs 10000
        --workers 7 --multiprocessing --no-val-score --export last)
rm -rf runs/gpu_unet runs/gpu_mrcnn
# each job is capped (timeout) so that the copying below always runs inside the call's limit
train() {  # $1 model, $2 backend, $3 budget seconds
  if [ "$1" = unet ]; then
    options=(--config weights/unet.json --warm-start "weights/unet${WARM_FROM:+.$WARM_FROM}.weights.h5" --learning-rate "$UNET_LR"
             --batch-size 16 --steps-per-epoch 200)
  else
    options=(--config weights/mrcnn.json --warm-start "weights/mrcnn${WARM_FROM:+.$WARM_FROM}.weights.h5" --learning-rate "$MRCNN_LR"
             --images-per-gpu 8 --steps-per-epoch 100 --validation-steps 4)
  fi
  if [ "$1" = unet ]; then read -ra extra <<< "${UNET_EXTRA:-}"; else read -ra extra <<< "${MRCNN_EXTRA:-}"; fi
  options+=("${extra[@]}")
  echo "$1 under $2 for $3 s ${extra[*]}" >> "$OUT/$1.log"
  # -k: a JAX process with forked data workers can hang on exit after saving (seen on CPU): kill it
  KERAS_BACKEND=$2 timeout -k 20 $(($3 + 90)) python3 -m tools.train "$1" --out "runs/gpu_$1" "${COMMON[@]}" \
    --time-limit "$3" "${options[@]}" >> "$OUT/$1.log" 2>&1
}
train_with_fallback() {  # $1 model, $2 backend: JAX failing before a checkpoint hands the rest to torch
  train "$1" "$2" "$BUDGET"
  status=$?
  left=$((BUDGET - (SECONDS - STARTED) - 20))
  if [ $status -ne 0 ] && [ "$2" = jax ] && [ ! -f "runs/gpu_$1/last.weights.h5" ] && [ $left -gt 60 ]; then
    echo "$1 under JAX failed (exit $status) before a checkpoint: torch for the ${left} s left" >> "$OUT/$1.log"
    rm -rf "runs/gpu_$1"; train "$1" torch "$left"; status=$?
  fi
  return $status
}
STARTED=$SECONDS
: > "$OUT/unet.log"; : > "$OUT/mrcnn.log"
# GPU utilisation and memory every 10 s, summarised at the end (issue 10 asks for it)
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 10 > /tmp/gpu_util.csv 2>/dev/null &
SAMPLER=$!
train_with_fallback unet "$UNET_BACKEND" & UNET=$!
train_with_fallback mrcnn "$MRCNN_BACKEND" & MRCNN=$!
wait $UNET; echo "unet exit $?"
wait $MRCNN; echo "mrcnn exit $?"
kill $SAMPLER 2>/dev/null
awk -F', ' 'NF == 2 {n++; u += $1; if ($1 > m) m = $1; if ($2 > mem) mem = $2}
  END {if (n) printf "GPU utilisation: mean %.0f %%, max %d %% over %d samples; memory used up to %d MiB\n", u / n, m, n, mem}' /tmp/gpu_util.csv
grep -h "crops in" "$OUT/unet.log" "$OUT/mrcnn.log"
# What comes back: at most 8 files of at most 16 MiB each. Float32 weights are over that (U-Net
# 16.8 MB, Mask R-CNN 27.7 MB): they travel as float16 values, as weights/ ships them.
for model in unet mrcnn; do
  run=runs/gpu_$model
  weights=$run/model.weights.h5 name=$model.weights.h5
  if [ ! -f "$weights" ] && [ -f "$run/last.weights.h5" ]; then  # stopped before export: the checkpoint still counts
    weights=$run/last.weights.h5 name=$model.last.weights.h5
  fi
  if [ -f "$weights" ]; then
    # (a checkpoint also holds the optimizer's state: 84 MB for the Mask R-CNN; not brought back)
    python3 -m tools.half_weights --model-only "$weights" "$OUT/$name" || echo "could not halve $weights"
    if [ -f "$run/model.json" ]; then cp "$run/model.json" "$OUT/$model.json"; else cp "$run/config.json" "$OUT/$model.json"; fi
  fi
  cp "$run/log.csv" "$OUT/$model.log.csv" 2>/dev/null
  tail -3 "$OUT/$model.log"
done
ls -la "$OUT"
