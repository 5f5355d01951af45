"""Tail latency of coded serving against its baselines (paper §V-F).

  python serve_bench.py --config configs/serving.py[:key=value,...] \
      --outdir DIR

Backends: "local" serves real MNIST queries with worker processes running the
trained F and F_P (both in each worker for the "adaptive" mode; it first
measures the instances' service times under the same load, without faults,
into DIR/service_times.json); "sim" simulates a cluster in virtual time with
service times drawn from such a file. Writes DIR/results.json and
DIR/latency_cdf.png and prints a markdown table. The experiment itself is
`jaxcc.serving.run_experiment`.

With `loads=...` (backend=sim) it runs the utilisation sweep instead
(`jaxcc.serving.run_sweep`): every mode at each load, DIR/results.json and
DIR/sweep.png (p99.9 against utilisation).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxcc import logs
from jaxcc import serving

_CONFIG = config_flags.DEFINE_config_file("config", "configs/serving.py",
                                          "Serving experiment configuration.")
_OUTDIR = flags.DEFINE_string("outdir", None, "Directory for the results.",
                              required=True)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' "
                             "messages and the traceback of errors.")


def main(argv):
  del argv
  logs.setup_scripts(_VERBOSE.value)
  with logs.clear_errors(_VERBOSE.value):
    if _CONFIG.value.loads:
      results = serving.run_sweep(_CONFIG.value, _OUTDIR.value)
      print(serving.sweep_table(results["runs"]))
      print(serving.sweep_pivot(results["runs"]))
    else:
      results = serving.run_experiment(_CONFIG.value, _OUTDIR.value)
      print(serving.experiment_table(results["runs"]))


if __name__ == "__main__":
  app.run(main)
