"""Compare coding schemes on one base model, the same test groups and patterns.

Each trained workdir (parity models or a learned code) is evaluated with the
configuration saved next to it; training-free Berrut codes and the default
prediction are added for every requested (k, missing). All rows must share
one base model, so their differences come from the codes alone.
"""

import json
import os

import ml_collections
import numpy as np

from jaxcc import metrics
from jaxcc import workdir as workdir_lib

_FIELDS = ("available_accuracy", "degraded_accuracy", "reconstruction_accuracy",
           "degraded_top5_accuracy")


def compare(workdirs, berrut=(), missing=None, test_group_seed=0):
  """Rows of metrics for `workdirs` plus Berrut codes `[(k, r, missing)]`.

  Args:
    workdirs: trained workdirs sharing one base model.
    berrut: `(k, r, missing)` triples of training-free Berrut codes to add.
    missing: erasures per evaluated pattern (default: each run's r).
    test_group_seed: seed that places the test samples into groups.
  """
  rows, base_dirs, first = [], set(), None
  for workdir in workdirs:
    config = workdir_lib.saved_config(workdir)
    config.test_group_seed = test_group_seed
    rows.append(_row(config, workdir, missing))
    base_dirs.add(os.path.abspath(rows[-1].pop("base_dir")))
    first = first or (config, workdir)
  if len(base_dirs) > 1:
    raise ValueError(f"the runs use different base models: {sorted(base_dirs)}"
                     "; train them with the same base_workdir")
  if berrut and first is None:
    raise ValueError("Berrut rows need at least one workdir for the base model")
  for k, r, lost in berrut:
    config = ml_collections.ConfigDict(first[0].to_dict())
    config.update(code="berrut", k=k, r=r)
    config.base_workdir = config.base_workdir or first[1]
    rows.append(_row(config, first[1], lost))
    rows[-1].pop("base_dir")
  floor = {"code": "default prediction", "approach": "none",
           "degraded_accuracy": rows[0]["default_accuracy"]} if rows else None
  return rows, floor


def _row(config, workdir, missing):
  exp, base_state, stage2 = workdir_lib.restore(workdir, config)
  lost = min(config.r if missing is None else missing, config.r)
  results = metrics.evaluate_split(exp, base_state, stage2, exp.dataset.test,
                                   seed=config.test_group_seed, missing=lost)
  trained = exp.approach.trains
  row = {"code": exp.code.name, "approach": exp.approach.name, "k": config.k,
         "r": config.r, "missing": lost,
         "workdir": workdir if trained else None,
         "encoder": config.learned.encoder
                    if exp.approach.name == "learned" else None,
         "base_dir": exp.base_dir,
         "default_accuracy": results["default_accuracy"]}
  row.update({f: results[f] for f in _FIELDS})
  return row


def to_markdown(rows, floor) -> str:
  lines = ["| code | approach | k | r | missing | A_a | A_d | recon. acc. |",
           "|---|---|---|---|---|---|---|---|"]
  for row in rows:
    name = row["code"]
    lines.append(
        f"| {name} | {row['approach']} | {row['k']} | {row['r']} | "
        f"{row['missing']} | {100 * row['available_accuracy']:.2f} | "
        f"{100 * row['degraded_accuracy']:.2f} | "
        f"{100 * row['reconstruction_accuracy']:.2f} |")
  if floor:
    lines.append(f"| default prediction | none | any | 0 | any | | "
                 f"{100 * floor['degraded_accuracy']:.2f} | |")
  return "\n".join(lines) + "\n"


def plot(rows, floor, path):
  """A_d against k, one line per code family (single-erasure rows)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  families = {}
  for row in rows:
    if row["missing"] == 1:
      family = row["code"].split("(")[0] + (
          f" [{row['encoder']}]" if row["encoder"] else "")
      families.setdefault(family, []).append(
          (row["k"], 100 * row["degraded_accuracy"]))
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for family, points in sorted(families.items()):
    ks, accs = zip(*sorted(points))
    ax.plot(ks, accs, "o-", label=family)
  if floor:
    ax.axhline(100 * floor["degraded_accuracy"], color="gray", ls="--",
               label="default prediction")
  ax.set_xlabel("k")
  ax.set_ylabel("degraded accuracy A_d (%)")
  ax.set_xticks(sorted({r["k"] for r in rows}))
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(rows, floor, out_dir):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "compare.json"), "w") as f:
    json.dump({"rows": rows, "default": floor}, f, indent=2)
  with open(os.path.join(out_dir, "compare.md"), "w") as f:
    f.write(to_markdown(rows, floor))
  plot(rows, floor, os.path.join(out_dir, "compare.png"))
  return np.array([r["degraded_accuracy"] for r in rows])
