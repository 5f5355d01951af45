"""Evaluates a trained workdir and writes DIR/eval.json and a plot of A_o(f).

  python evaluate.py --workdir DIR [--config.eval_missing=2 ...]

The workdir's own config.json is used; `--config.<field>=value` overrides
fields that do not change what was trained (e.g. `test_group_seed`,
`eval_missing`); a field the trained stages depend on is refused.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from configs import common
from jaxcc import evaluation
from jaxcc import logs
from jaxcc import workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory written by "
                               "train.py.", required=True)
_CONFIG = config_flags.DEFINE_config_dict(
    "config", common.base_config(),
    "Overrides of the workdir's config (--config.<field>=value).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' "
                             "messages and the traceback of errors.")


def main(argv):
  del argv
  logs.setup_scripts(_VERBOSE.value)
  with logs.clear_errors(_VERBOSE.value):
    config = workdir.saved_config(_WORKDIR.value)
    config.update_from_flattened_dict(_overrides())
    evaluation.evaluate(config, _WORKDIR.value)


def _overrides() -> dict:
  """The `--config.<field>` flags given on the command line."""
  return {name[len("config."):]: flags.FLAGS[name].value
          for name in flags.FLAGS if name.startswith("config.") and
          flags.FLAGS[name].present}


if __name__ == "__main__":
  app.run(main)
