"""Measures inference, training-step and code throughput; see BENCHMARKS.md.

  python benchmark.py --config configs/benchmark.py[:key=value,...] \
      [--out benchmarks/results]

Writes <out>/<name>.json and <out>/<name>.md (rewritten after every row, so
a stopped run leaves the rows it measured) and prints the table.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxcc import benchmark

_CONFIG = config_flags.DEFINE_config_file("config", "configs/benchmark.py",
                                          "Benchmark configuration file.")
_OUT = flags.DEFINE_string("out", "benchmarks/results",
                           "Directory for the results.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config, out = _CONFIG.value, _OUT.value
  results = benchmark.run(
      config, on_row=lambda so_far: benchmark.write(so_far, out, config.name))
  print(benchmark.write(results, out, config.name))


if __name__ == "__main__":
  app.run(main)
