"""Measures inference, training-step and code throughput; see BENCHMARKS.md.

  python benchmark.py --config configs/benchmark.py[:key=value,...] \
      [--out benchmarks/results] [--verbose]

Writes <out>/<name>.json and <out>/<name>.md (rewritten after every row, so
a stopped run leaves the rows it measured), logs each row as it is measured
and prints the table at the end.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxcc import benchmark
from jaxcc import logs

_CONFIG = config_flags.DEFINE_config_file("config", "configs/benchmark.py",
                                          "Benchmark configuration file.")
_OUT = flags.DEFINE_string("out", "benchmarks/results",
                           "Directory for the results.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' "
                             "messages and the traceback of errors.")


def main(argv):
  del argv
  logs.setup_scripts(_VERBOSE.value)
  with logs.clear_errors(_VERBOSE.value):
    config, out = _CONFIG.value, _OUT.value
    results = benchmark.run(
        config, on_row=lambda so_far: benchmark.write(so_far, out, config.name))
    print(benchmark.write(results, out, config.name))


if __name__ == "__main__":
  app.run(main)
