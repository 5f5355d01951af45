"""Coded prediction serving: the tail-latency experiment (paper §V-F).

Real run on this machine (local backend: 12 + 12/k worker processes running
the MNIST F and F_P that experiments/serving.sh trains, injected slowdowns,
4,000 queries per mode; about 15 minutes on 2 busy cores):

  python serve_bench.py --config configs/serving.py --outdir runs/serving/local

Simulation at the paper's setup (270 qps, 100k queries, 3 runs, background
transfers), drawing service times from the single-instance latencies that
the local run measured:

  python serve_bench.py --config configs/serving.py:backend=sim,\
service_times=runs/serving/local/service_times.json,rate=270,\
num_queries=100000,runs=3,faults.process=transfers,faults.delay_s=0.001 \
      --outdir runs/serving/paper-sim

The utilisation sweep (issue 15): every policy at loads from 20 % to 90 % of
the base pool's capacity, simulated (synthetic service times shaped like the
local run's; slow episodes of 20 ms at 1 per second per instance; 3 seeds;
about 15 minutes on 2 busy cores):

  python serve_bench.py --config configs/serving.py:backend=sim,runs=3,\
loads=0.2+0.35+0.5+0.65+0.8+0.9,ks=2,num_queries=20000,\
modes=none+equal-resources+hedged+parm+parm-hedged+adaptive,\
faults.rate=1,faults.duration_s=0.02 --outdir runs/serving/sweep-k2

ApproxIFER's non-systematic Berrut code on the same F (no parity models;
"parm" then means: coded with this code):

  python serve.py --config configs/serving.py:code=berrut,\
berrut.systematic=false --demo 200

The adaptive policy on real workers (local backend; each worker holds F and
F_P, so the policy can move an instance between them):

  python serve_bench.py --config configs/serving.py:workdirs.2=runs/serve-cap,\
ks=2,num_base=4,modes=none+hedged+parm+adaptive,num_queries=2000,\
calibration_queries=500,rate=300 --outdir runs/serving/adaptive-local/rate300

Lists (`modes`, `ks`, `loads`) are separated by "+". Measured results:
docs/SERVING.md.
"""

import ml_collections

from configs import common


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.backend = "local"  # local (worker processes) | sim (virtual time)
  c.modes = "none+equal-resources+hedged+parm"
  c.ks = "2+3+4"  # k of parm; equal-resources and hedged get m/k copies
  # Trained F and F_P for each k (`train.py --config configs/parity.py...`).
  c.workdirs = ml_collections.ConfigDict({
      "2": "runs/serve-mnist", "3": "runs/serve-mnist-k3",
      "4": "runs/serve-mnist-k4"})
  # The code: "" serves each workdir's parity models with the code they were
  # trained for (ParM); "berrut" serves the workdir's F under a Berrut code
  # with r parities, F computing every coded query (berrut.systematic=false:
  # ApproxIFER's code, all k + r workers on coded queries, every answer
  # decoded).
  c.code = ""
  c.r = 1
  c.berrut = ml_collections.ConfigDict()
  c.berrut.systematic = True
  c.num_base = 12  # m, base-model instances (a multiple of every k)
  c.rate = 200.0  # Poisson arrivals per second
  c.num_queries = 4000
  c.runs = 1  # repetitions with seeds seed, seed+1, ...; medians reported
  c.seed = 0
  c.group_timeout_ms = 20.0  # seal a partial coding group (0: never)
  c.deadline_ms = 2000.0  # then serve the default prediction (0: never)
  c.rpc_timeout_ms = 2000.0  # a response not back by then is lost
  c.hedge_quantile = 0.95  # hedge after this quantile of service times
  # adaptive (jaxcc.serving.Adaptive): stop coding when the load with
  # parities exceeds code_below; hedge while the load is below hedge_below.
  c.code_below = 0.85
  c.hedge_below = 1.0
  # Utilisation sweep (backend=sim): loads as fractions of the base pool's
  # capacity, e.g. 0.2+0.35+0.5+0.65+0.8+0.9; empty: the fixed-rate run.
  c.loads = ""
  # Sweep: offline accuracies "A_a+A_d+default" (e.g. 0.918+0.845+0.1 from
  # eval.json) turn the answers' sources into a served accuracy; "": none.
  c.source_accuracy = ""
  c.calibration_queries = 1000  # local: fault-free queries timing instances
  c.service_times = ""  # sim: service_times.json of a local run (sweep:
  # empty draws synthetic ones, jaxcc.serving._sweep.synthetic_service_times)

  c.faults = ml_collections.ConfigDict()
  c.faults.process = "episodes"  # none | episodes | transfers
  c.faults.rate = 0.05  # episodes: slow episodes per second per instance
  c.faults.duration_s = 1.0  # episodes: mean episode length
  c.faults.pairs = 4  # transfers: concurrent background transfers
  c.faults.transfer_mb_min = 128.0
  c.faults.transfer_mb_max = 256.0
  c.faults.bandwidth_mb_s = 160.0
  c.faults.delay_s = 0.02  # Pareto scale of the extra delay while slow
  c.faults.alpha = 1.5  # Pareto shape (heavy-tailed)
  c.faults.max_delay_s = 0.5
  c.faults.crash_rate = 0.0  # crashes per second per instance (local)
  c.faults.restart_s = 1.0
  c.faults.drop_prob = 0.0
  return common.apply_args(c, arg)
