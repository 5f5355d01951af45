"""Compares coding schemes trained on one base model; writes a table and plot.

  python compare.py --workdirs runs/a,runs/b --berrut 2:1:1,4:2:2 --out DIR

Writes DIR/compare.json, DIR/compare.md and DIR/compare.png (A_d against k).
"""

from absl import app
from absl import flags
from absl import logging

from jaxcc import comparison

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Trained workdirs (one base).")
_BERRUT = flags.DEFINE_list("berrut", [], "Berrut codes to add, as k:r:missing.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_SEED = flags.DEFINE_integer("test_group_seed", 0, "Seed of the test groups.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  berrut = [tuple(int(v) for v in item.split(":")) for item in _BERRUT.value]
  if any(len(b) != 3 for b in berrut):
    raise app.UsageError("--berrut items are k:r:missing, e.g. 2:1:1")
  rows, floor = comparison.compare(_WORKDIRS.value, berrut,
                                   test_group_seed=_SEED.value)
  comparison.write(rows, floor, _OUT.value)
  print(comparison.to_markdown(rows, floor))


if __name__ == "__main__":
  app.run(main)
