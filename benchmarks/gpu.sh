#!/usr/bin/env bash
# Accelerator throughput and scale, in one call of a lent GPU machine (< 9 min).
#
#   bash benchmarks/gpu.sh            # on the GPU machine; results in $OUT
#   TINY=1 OUT=/tmp/gpu_out PYTHON=.venv/bin/python bash benchmarks/gpu.sh
#                # the same steps, shrunk, on a CPU (a minute or two; with an
#                # MLP base model, MLP encoder and the embedded digits)
#
# 1. benchmark.py at GPU-sized batches: mlp and lenet5 with every row, then
#    vgg11, resnet18 and resnet152 (inference and parity-model step). Its
#    training rows run their epochs as train.py does (epoch_loop=auto: one
#    lax.scan on a GPU; on a CPU a loop of jitted steps for conv models) and
#    record the loop in a `loop` field and column. The conv rows are here:
#    lenet5's parity and inference steps, the learned conv encoder's step
#    (encoders=mlp+conv) and resnet18's parity step.
# 2. benchmarks/pipeline.py: stage-2 epochs through the streaming pipeline
#    against the in-memory path, MLP on MNIST and on 120,000 generated
#    memory-mapped images over a 64 MiB device budget, then LeNet-5 on MNIST.
# 3. train.py: a ResNet-18 base model and k = 2 parity model on MNIST, then a
#    k = 2 learned Conv code through that base model, each for a fixed number
#    of epochs (3, 3 and 3).
# Before the call, copy the data into the repository (data/ is ignored, so
# name it in the call's carry): mkdir -p data && cp -r ../shared/data/mnist
# data/. Python packages the machine lacks travel as wheels in .whl/ (also
# carried); see docs/BENCHMARKS.md. Writes 9 files to $OUT: env.txt, log.txt,
# bench_small.json, bench_big.json, benchmark.md, pipeline_mlp.md,
# pipeline_lenet5.md, train_parity.json, train_learned.json. Each part has a
# time limit, so a slow part costs its own results only, and all of them
# share BUDGET seconds (default 520; TINY 720).
# Environment overrides: PYTHON, DATA, DATASET, MODEL, ENCODER, BASE_EPOCHS,
# EPOCHS, LEARNED_EPOCHS, SMALL_ARGS, BIG_ARGS, PIPE_ARGS, LIMIT_SMALL,
# LIMIT_BIG, LIMIT_PIPE, LIMIT_TRAIN, BUDGET.
set -uo pipefail
source "$(dirname "$0")/_common.sh"
begin
WORK=$(mktemp -d /tmp/jaxcc_gpu.XXXXXX)

if [ "${TINY:-0}" = 1 ]; then
  SMALL_ARGS=${SMALL_ARGS:-models=mlp,ks=2,steps=2,repeats=2,batch=8,inference_batch=64,code_batch=64,peak_size=256,bandwidth_mib=16,codes=summation+learned-conv}
  BIG_ARGS=${BIG_ARGS:-models=lenet5,ks=2,rows=inference+parity,steps=1,repeats=1,batch=8,inference_batch=8,peak_size=256,bandwidth_mib=16}
  DATASET=${DATASET:-embedded} MODEL=${MODEL:-mlp} ENCODER=${ENCODER:-mlp}
  BASE_EPOCHS=${BASE_EPOCHS:-1} EPOCHS=${EPOCHS:-1} LEARNED_EPOCHS=${LEARNED_EPOCHS:-1}
  PIPE_ARGS=${PIPE_ARGS:---generated=6000 --max_device_bytes=1048576 --repeats=1}
  LIMIT_PIPE=${LIMIT_PIPE:-120} BUDGET=${BUDGET:-720}
else
  SMALL_ARGS=${SMALL_ARGS:-models=mlp,lenet5,ks=2,4,encoders=mlp+conv,steps=20,repeats=5,batch=256,inference_batch=4096,code_batch=8192,peak_size=8192,bandwidth_mib=1024}
  BIG_ARGS=${BIG_ARGS:-models=vgg11,resnet18,resnet152,ks=2,rows=inference+parity,steps=10,repeats=3,batch=128,inference_batch=512,peak_size=8192,bandwidth_mib=1024}
  DATASET=${DATASET:-npz:${DATA:-data/mnist}} MODEL=${MODEL:-resnet18}
  ENCODER=${ENCODER:-conv}
  BASE_EPOCHS=${BASE_EPOCHS:-3} EPOCHS=${EPOCHS:-3} LEARNED_EPOCHS=${LEARNED_EPOCHS:-3}
  PIPE_ARGS=${PIPE_ARGS:---generated=120000 --max_device_bytes=67108864 --repeats=3}
  LIMIT_PIPE=${LIMIT_PIPE:-60} BUDGET=${BUDGET:-520}
fi

# part NAME LIMIT COMMAND...: COMMAND within LIMIT seconds and what is left of
# BUDGET; a part stopped or failed is logged and the script goes on.
part() {
  local name=$1 limit
  limit=$(left "$2")
  shift 2
  if (( limit < 10 )); then echo "=== $name skipped: budget spent"; return; fi
  echo "=== $(date -u +%H:%M:%S) $name (limit ${limit}s)"
  timeout "$limit" "$@" || echo "=== $name stopped: rc=$?"
}

echo "=== $(date -u +%H:%M:%S) packages"
install_wheels
{
  date -u
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" - <<'PY'
import importlib, sys
print("python", sys.version)
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint",
             "ml_collections", "absl", "numpy"):
  try:
    print(name, getattr(importlib.import_module(name), "__version__", "?"))
  except ImportError as e:
    print(name, "MISSING", e)
import jax
print("backend", jax.default_backend(), jax.devices())
print("default_matmul_precision", jax.config.jax_default_matmul_precision)
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! grep -q "^backend gpu" "$OUT/env.txt" && [ "${TINY:-0}" != 1 ]; then
  echo "JAX sees no GPU (env.txt); stopping."; exit 1
fi
if grep -q MISSING "$OUT/env.txt"; then
  echo "missing Python packages (env.txt): carry their wheels in .whl/"; exit 1
fi
missing_data "$DATASET" && exit 1

part "benchmark: small models" "${LIMIT_SMALL:-160}" "$PY" benchmark.py \
    --config "configs/benchmark.py:$SMALL_ARGS,name=bench_small" --out "$WORK"
part "benchmark: big models" "${LIMIT_BIG:-100}" "$PY" benchmark.py \
    --config "configs/benchmark.py:$BIG_ARGS,name=bench_big" --out "$WORK"
for name in bench_small bench_big; do
  [ -f "$WORK/$name.json" ] && cp "$WORK/$name.json" "$OUT/"
  [ -f "$WORK/$name.md" ] && { echo "## $name"; echo; cat "$WORK/$name.md"; echo; }
done > "$OUT/benchmark.md"

# shellcheck disable=SC2086  # PIPE_ARGS holds several flags
part "pipeline: stream vs memory, mlp" "$LIMIT_PIPE" "$PY" \
    benchmarks/pipeline.py --dataset="$DATASET" --model=mlp $PIPE_ARGS \
    --out="$OUT/pipeline_mlp.md"
# shellcheck disable=SC2086
part "pipeline: stream vs memory, lenet5" "$LIMIT_PIPE" "$PY" \
    benchmarks/pipeline.py --dataset="$DATASET" --model=lenet5 $PIPE_ARGS \
    --generated=0 --out="$OUT/pipeline_lenet5.md"

part "train: $MODEL parity model, k=2" "${LIMIT_TRAIN:-75}" "$PY" train.py \
    --config "configs/parity.py:dataset=$DATASET,model=$MODEL,k=2,base_epochs=$BASE_EPOCHS,epochs=$EPOCHS" \
    --workdir "$WORK/parity"
part "train: $MODEL learned $ENCODER code, k=2" "${LIMIT_TRAIN:-75}" "$PY" train.py \
    --config "configs/learned.py:dataset=$DATASET,model=$MODEL,encoder=$ENCODER,k=2,base_epochs=$BASE_EPOCHS,epochs=$LEARNED_EPOCHS" \
    --config.base_workdir="$WORK/parity" --workdir "$WORK/learned"
for run in parity learned; do
  "$PY" - "$WORK/$run" "$OUT/train_$run.json" <<'PY'
import json, os, sys
workdir, out = sys.argv[1:]
def read(name, lines=False):
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return [json.loads(l) for l in f] if lines else json.load(f)
with open(out, "w") as f:
  json.dump({"config": read("config.json"),
             "metrics": read("metrics.jsonl", lines=True),
             "eval": read("eval.json")}, f, indent=1)
PY
done
rm -rf "$WORK"
finish
