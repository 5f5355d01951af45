#!/usr/bin/env bash
# End-to-end train.py throughput against the bare step, back to back:
# the benchmark suite's parity-model and learned-code steps (MNIST shapes,
# Base-MLP, k = 2, 64 groups), then train.py on real MNIST for the same code
# (F from runs/mnist-mlp, trained by parity_models.sh). Compare
# runs/benchmarks/end_to_end.md with the "summary" lines of
# runs/e2e-*/metrics.jsonl (examples/s over the whole stage, compile,
# validation and checkpoints included).
#   bash experiments/end_to_end.sh [DATA_ROOT]
set -euo pipefail
root=${1:-../shared/data}
python benchmark.py --out runs/benchmarks \
  --config configs/benchmark.py:models=mlp,ks=2,rows=parity+learned,repeats=5,name=end_to_end
python train.py --config "configs/parity.py:dataset=npz:$root/mnist,k=2,base_epochs=30,epochs=30,eval_every=10" \
  --config.base_workdir=runs/mnist-mlp --workdir runs/e2e-parity-k2
python train.py --config "configs/learned.py:dataset=npz:$root/mnist,encoder=mlp,k=2,base_epochs=30,epochs=3,eval_every=10" \
  --config.base_workdir=runs/mnist-mlp --workdir runs/e2e-learned-mlp-k2
grep -h '"summary"' runs/e2e-*/metrics.jsonl
