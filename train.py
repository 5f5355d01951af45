"""Trains a base model and its coded-computation stage, then evaluates.

Resumable: rerun the same command after an interruption.

  python train.py --config configs/parity.py[:key=value,...] --workdir DIR
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxcc import evaluation
from jaxcc import training

_CONFIG = config_flags.DEFINE_config_file("config", "configs/parity.py",
                                          "Training configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, "
                               "metrics and results.", required=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  training.train(_CONFIG.value, _WORKDIR.value)
  evaluation.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
