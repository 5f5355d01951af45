"""Compares coding schemes trained on one base model; writes a table and plot.

  python compare.py --workdirs runs/a,runs/b --berrut 2:1:1,4:2:2 --out DIR
  python compare.py --base_workdir runs/f \
      --training_free berrut:8:1:1,approxifer:8:1:1,spline:8:1:1 --out DIR

Training-free codes (`--training_free name:k:r:missing`, name one of
berrut, approxifer, spline; `--berrut k:r:missing` is berrut) run on the
base model of `--base_workdir` (default: the first of `--workdirs`). Writes
DIR/compare.json, DIR/compare.md, DIR/compare.png (A_d against k) and
DIR/compare_all_slots.png (the same over all k decoded outputs).
`--merge DIR` keeps the rows of an earlier run's DIR/compare.json (same
base model) and adds or replaces the new ones, so a study can add codes
without evaluating the others again:

  python compare.py --workdirs runs/f/learned-k8 --merge DIR --out DIR
"""

from absl import app
from absl import flags
from absl import logging

from jaxcc import comparison

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Trained workdirs (one base).")
_BERRUT = flags.DEFINE_list("berrut", [], "Berrut codes to add, as k:r:missing.")
_FREE = flags.DEFINE_list("training_free", [], "Training-free codes to add, "
                          "as name:k:r:missing.")
_BASE = flags.DEFINE_string("base_workdir", None, "Workdir of the base model "
                            "of the training-free rows.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_MERGE = flags.DEFINE_string("merge", None, "Directory of an earlier "
                             "compare.json whose rows are kept.")
_SEED = flags.DEFINE_integer("test_group_seed", 0, "Seed of the test groups.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  berrut = [tuple(int(v) for v in item.split(":")) for item in _BERRUT.value]
  if any(len(b) != 3 for b in berrut):
    raise app.UsageError("--berrut items are k:r:missing, e.g. 2:1:1")
  free = [item.split(":") for item in _FREE.value]
  if any(len(f) != 4 or not all(v.isdigit() for v in f[1:]) for f in free):
    raise app.UsageError("--training_free items are name:k:r:missing, e.g. "
                         "approxifer:8:1:1")
  free = [(name, int(k), int(r), int(m)) for name, k, r, m in free]
  rows, floor = comparison.compare(_WORKDIRS.value, berrut,
                                   test_group_seed=_SEED.value,
                                   training_free=free,
                                   base_workdir=_BASE.value)
  if _MERGE.value:
    old_rows, old_floor = comparison.read(_MERGE.value)
    rows, floor = comparison.merge(old_rows, rows), floor or old_floor
  comparison.write(rows, floor, _OUT.value)
  print(comparison.to_markdown(rows, floor))


if __name__ == "__main__":
  app.run(main)
