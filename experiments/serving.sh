#!/usr/bin/env bash
# The serving results in docs/SERVING.md, in order (about 40 minutes on two
# busy CPU cores):
#   1. MNIST F and F_P for k = 2, 3, 4 on the embedded digits (small budget:
#      10 base epochs, 30 parity epochs; one shared F);
#   2. the real local run: 12 + 12/k worker processes, injected slowdowns;
#   3. the simulator on the same setup, from the service times of step 2;
#   4. the simulator at the paper's setup (270 qps, 100k queries, 3 runs,
#      background transfers);
#   5. the event-loop lag while a killed worker restarts;
#   6. the load generator against serve.py at 100 and 300 queries/s;
#   7. the utilisation sweep, simulated (every policy at six loads from 20 to
#      90 %, 3 seeds; k = 2 with 20k queries per run, k = 3, 4 with 10k;
#      synthetic service times, so it needs none of the steps above; about
#      20 minutes);
#   8. capacity (highest rate with p99 <= 50 ms; local and Ray Serve, with
#      and without ParM) and coding off the event loop (inline against a
#      thread, through HTTP and in-process): about 20 minutes.
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
# 5. restart lag: the frontend's event-loop lag while a killed MNIST worker
#    restarts (a 1 ms sleep loop; docs/SERVING.md, Hardening).
python - <<'PY'
import asyncio, time
import numpy as np
from jaxcc import serving

async def main():
  served, ds = serving.from_workdir("runs/serve-mnist")
  x = served.preprocess(ds.test.image[:1])
  pool = await serving.LocalPool.create(served.base, x, 1,
                                        faults=serving.Faults(restart_s=0.1))
  lags = []

  async def monitor():
    while True:
      tic = time.perf_counter()
      await asyncio.sleep(0.001)
      lags.append(time.perf_counter() - tic - 0.001)

  task = asyncio.create_task(monitor())
  await asyncio.sleep(1.0)
  before = max(lags)
  lags.clear()
  pool.kill(0)
  tic = time.perf_counter()
  while pool.stats()["restarts"] < 1:
    await asyncio.sleep(0.01)
  print(f"restart took {time.perf_counter() - tic:.1f} s; event-loop lag max "
        f"{1e3 * max(lags):.1f} ms, p99 {1e3 * np.percentile(lags, 99):.1f} "
        f"ms over {len(lags)} ticks (idle before: max {1e3 * before:.1f} ms)")
  task.cancel()
  await pool.close()

asyncio.run(main())
PY
# 6. the load generator against serve.py (k = 2, 2 + 1 workers, no faults).
python serve.py --port 8124 &
server=$!
trap 'kill $server' EXIT
until curl -sf http://127.0.0.1:8124/healthz > /dev/null; do sleep 1; done
python loadgen.py --url http://127.0.0.1:8124 --rate 100 --duration_s 10 \
  --connections 32 --out runs/serving/loadgen-100.json
python loadgen.py --url http://127.0.0.1:8124 --rate 300 --duration_s 10 \
  --connections 64 --out runs/serving/loadgen-300.json
curl -s http://127.0.0.1:8124/stats
kill $server
trap - EXIT
# 7. the utilisation sweep (docs/SERVING.md, "When each policy wins").
sweep="backend=sim,faults.rate=1,faults.duration_s=0.02,runs=3"
python serve_bench.py --config "configs/serving.py:$sweep,loads=0.2+0.35+0.5+0.65+0.8+0.9,ks=2,num_queries=20000,modes=none+equal-resources+hedged+parm+parm-hedged+adaptive" \
  --outdir runs/serving/sweep-k2
python serve_bench.py --config "configs/serving.py:$sweep,loads=0.2+0.35+0.5+0.65+0.8+0.9,ks=3+4,num_queries=10000,modes=equal-resources+hedged+parm+parm-hedged+adaptive" \
  --outdir runs/serving/sweep-k34
# 8. capacity and the frontend's cost (docs/SERVING.md, "Capacity and the
#    frontend's cost").
python experiments/capacity.py --workdir runs/serve-mnist --configs local:none,local:parm \
  --start_rate 20 --growth 1.5 --bisections 2 --duration_s 15 --out runs/capacity/local
python experiments/capacity.py --workdir runs/serve-mnist --configs ray:none,ray:parm \
  --start_rate 20 --growth 1.5 --bisections 2 --duration_s 15 --out runs/capacity/ray
python experiments/capacity.py --workdir runs/serve-mnist \
  --configs local:parm:inline,local:parm:thread --repeats 2 --rates 150 \
  --duration_s 15 --out runs/capacity/coding
python experiments/capacity.py --in_process --rates 100,300 --repeats 2 \
  --queries 2000 --out runs/capacity/in-process
