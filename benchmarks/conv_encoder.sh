#!/usr/bin/env bash
# The learned ConvEncoder code at the paper's budget, in one call of a lent
# GPU machine (issue 12, item 4): k = 2, r = 1, loss LOSS (default mse-base,
# the paper's; kl-base learned faster on the CPU, docs/RESULTS.md) and
# pattern reduction PATTERNS (default mean, the paper's; worst took MNIST's
# conv code out of its copy-one-input optimum on the CPU), through a
# Base-MLP F, on MNIST and Fashion-MNIST, EPOCHS epochs (the paper's 500) with
# the validation A_d every EVAL_EVERY epochs in metrics.jsonl.
#
#   bash benchmarks/conv_encoder.sh     # on the GPU machine; results in $OUT
#   TINY=1 OUT=/tmp/conv_out PYTHON=.venv/bin/python bash benchmarks/conv_encoder.sh
#                # 1 epoch of F and of the code on the embedded digits, CPU
#
# Before the call, copy the data into the repository and carry it, as for
# benchmarks/gpu.sh (data/ is git-ignored): mkdir -p data && cp -r
# ../shared/data/mnist ../shared/data/fashion_mnist data/. Wheels in .whl/
# are installed first, as gpu.sh does. Each dataset trains for at most LIMIT
# seconds and all share BUDGET; a run stopped by its limit is evaluated from
# its last checkpoint (every 30 s) and keeps its curve so far. Writes to
# $OUT: log.txt and, per dataset, <name>/config.json, metrics.jsonl,
# eval.json and workdir.tgz (the checkpoints: unpack it into $WORK and carry
# $WORK in the next call to train on from there).
# Environment overrides: PYTHON, DATA, DATASETS, WORK, EPOCHS, BASE_EPOCHS,
# EVAL_EVERY, LOSS, PATTERNS, LIMIT, BUDGET.
set -uo pipefail
source "$(dirname "$0")/_common.sh"
begin

if [ "${TINY:-0}" = 1 ]; then
  DATASETS=${DATASETS:-embedded} EPOCHS=${EPOCHS:-1} BASE_EPOCHS=${BASE_EPOCHS:-1}
  EVAL_EVERY=${EVAL_EVERY:-1} WORK=${WORK:-$(mktemp -d /tmp/jaxcc_conv.XXXXXX)}
else
  DATASETS=${DATASETS:-mnist fashion_mnist} EPOCHS=${EPOCHS:-500}
  BASE_EPOCHS=${BASE_EPOCHS:-30} EVAL_EVERY=${EVAL_EVERY:-10}
  WORK=${WORK:-runs/conv_encoder}
fi
BUDGET=${BUDGET:-540}
LIMIT=${LIMIT:-260}
LOSS=${LOSS:-mse-base}
PATTERNS=${PATTERNS:-mean}

install_wheels
"$PY" -c "import jax; print('backend', jax.default_backend(), jax.devices())"

for name in $DATASETS; do
  dataset=$name
  [ "$name" = embedded ] || dataset=npz:${DATA:-data}/$name
  missing_data "$dataset" && continue
  workdir=$WORK/$name
  limit=$(left "$LIMIT")
  if (( limit < 20 )); then echo "=== $name skipped: budget spent"; continue; fi
  echo "=== $(date -u +%H:%M:%S) $name: conv encoder, k=2, $LOSS, patterns=$PATTERNS, $EPOCHS epochs (limit ${limit}s)"
  rm -f "$workdir/eval.json"  # written again below, for this call
  timeout "$limit" "$PY" train.py \
      --config "configs/learned.py:dataset=$dataset,model=mlp,encoder=conv,loss=$LOSS,patterns=$PATTERNS,k=2,base_epochs=$BASE_EPOCHS,epochs=$EPOCHS,eval_every=$EVAL_EVERY,checkpoint_every_secs=30" \
      --workdir "$workdir" || echo "=== $name stopped: rc=$?"
  if [ ! -f "$workdir/eval.json" ] && [ -d "$workdir/stage2" ]; then
    echo "=== $(date -u +%H:%M:%S) $name: evaluating the last checkpoint"
    timeout "$(left 90)" "$PY" evaluate.py --workdir "$workdir" ||
        echo "=== $name evaluation stopped: rc=$?"
  fi
  mkdir -p "$OUT/$name"
  for file in config.json metrics.jsonl eval.json; do
    [ -f "$workdir/$file" ] && cp "$workdir/$file" "$OUT/$name/"
  done
  tar czf "$OUT/$name/workdir.tgz" -C "$WORK" "$name"
done
finish
