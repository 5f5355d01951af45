"""Evaluates a trained workdir and writes DIR/eval.json and a plot of A_o(f).

  python evaluate.py --config configs/parity.py[:key=value,...] --workdir DIR
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxcc import evaluation

_CONFIG = config_flags.DEFINE_config_file("config", "configs/parity.py",
                                          "The configuration used to train.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory written by "
                               "train.py.", required=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  evaluation.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
