"""Trains a base model and its coded-computation stage, then evaluates.

Resumable: rerun the same command after an interruption. Compiled programs
are cached on disk (`--compilation_cache`), so a rerun with the same shapes
(another seed or workdir) skips most of its compiling.

  python train.py --config configs/parity.py[:key=value,...] --workdir DIR
"""

import os

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jaxcc import evaluation
from jaxcc import logs
from jaxcc import stages

_CONFIG = config_flags.DEFINE_config_file("config", "configs/parity.py",
                                          "Training configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, "
                               "metrics and results.", required=True)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' "
                             "messages and the traceback of errors.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first and train "
    "data-parallel over the devices of every host (run on each host).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of hosts (multihost).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Index of this host (multihost).")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", "~/.cache/jaxcc/xla", "JAX's persistent compilation "
    "cache directory ('': none); $JAX_COMPILATION_CACHE_DIR overrides it.")


def main(argv):
  del argv
  logs.setup_scripts(_VERBOSE.value)
  if _COMPILATION_CACHE.value and not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.expanduser(_COMPILATION_CACHE.value))
  with logs.clear_errors(_VERBOSE.value):
    if _MULTIHOST.value:
      jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                 num_processes=_NUM_PROCESSES.value,
                                 process_id=_PROCESS_ID.value)
    stages.train(_CONFIG.value, _WORKDIR.value)
    evaluation.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
