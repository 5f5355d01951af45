#!/usr/bin/env bash
# The serving results in docs/SERVING.md, in order (about 35 minutes on two
# busy CPU cores):
#   1. MNIST F and F_P for k = 2, 3, 4 on the embedded digits (small budget:
#      10 base epochs, 30 parity epochs; one shared F);
#   2. the real local run: 12 + 12/k worker processes, injected slowdowns;
#   3. the simulator on the same setup, from the service times of step 2;
#   4. the simulator at the paper's setup (270 qps, 100k queries, 3 runs,
#      background transfers).
#   bash experiments/serving.sh
set -euo pipefail
python train.py --config configs/parity.py --workdir runs/serve-mnist
for k in 3 4; do
  python train.py --config "configs/parity.py:k=$k" \
    --config.base_workdir=runs/serve-mnist --workdir "runs/serve-mnist-k$k"
done
python serve_bench.py --config configs/serving.py --outdir runs/serving/local
times=runs/serving/local/service_times.json
python serve_bench.py --config "configs/serving.py:backend=sim,service_times=$times" \
  --outdir runs/serving/local-sim
python serve_bench.py --config "configs/serving.py:backend=sim,service_times=$times,rate=270,num_queries=100000,runs=3,faults.process=transfers,faults.delay_s=0.001" \
  --outdir runs/serving/paper-sim
