"""Evaluates a trained workdir and writes DIR/eval.json and a plot of A_o(f).

  python evaluate.py --config configs/parity.py[:key=value,...] --workdir DIR
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxcc import evaluation
from jaxcc import logs

_CONFIG = config_flags.DEFINE_config_file("config", "configs/parity.py",
                                          "The configuration used to train.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory written by "
                               "train.py.", required=True)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' "
                             "messages and the traceback of errors.")


def main(argv):
  del argv
  logs.setup_scripts(_VERBOSE.value)
  with logs.clear_errors(_VERBOSE.value):
    evaluation.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
