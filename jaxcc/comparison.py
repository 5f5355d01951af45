"""Compare coding schemes on one base model, the same test groups and patterns.

Each trained workdir (parity models or a learned code) is evaluated with the
configuration saved next to it; training-free codes (`TRAINING_FREE`) and
the default prediction are added for every requested (k, r, missing), on
the base model of `base_workdir` (default: the first workdir's). All rows
must share one base model, so their differences come from the codes alone.
Each row has both metric conventions: A_d over the reconstructed slots only
(`degraded_accuracy`) and over all k decoded outputs
(`degraded_accuracy_all_slots`, ApproxIFER's); they coincide for
non-systematic codes, whose k outputs all come from the decoder.
"""

import json
import os

import ml_collections
import numpy as np

from jaxcc import metrics
from jaxcc import workdir as workdir_lib

_FIELDS = ("base_accuracy", "available_accuracy", "degraded_accuracy",
           "degraded_accuracy_all_slots", "reconstruction_accuracy",
           "degraded_top5_accuracy")
# Training-free codes by name: the config fields that make them.
TRAINING_FREE = {
    "berrut": {"code": "berrut", "berrut": {"systematic": True}},
    "approxifer": {"code": "berrut", "berrut": {"systematic": False}},
    "spline": {"code": "spline", "spline": {"search": True}},
}


def compare(workdirs, berrut=(), missing=None, test_group_seed=0,
            training_free=(), base_workdir=None):
  """Rows of metrics for `workdirs` plus training-free codes.

  Args:
    workdirs: trained workdirs sharing one base model.
    berrut: `(k, r, missing)` triples of systematic Berrut codes to add.
    missing: erasures per evaluated pattern (default: each run's r).
    test_group_seed: seed that places the test samples into groups.
    training_free: `(name, k, r, missing)` of training-free codes to add,
      `name` one of `TRAINING_FREE`.
    base_workdir: a workdir whose saved config and base model the
      training-free rows use (default: the first of `workdirs`).
  """
  free = [("berrut",) + tuple(b) for b in berrut] + list(training_free)
  for name, *_ in free:
    if name not in TRAINING_FREE:
      raise ValueError(f"unknown training-free code {name!r}; known: "
                       f"{list(TRAINING_FREE)}")
  template = base_workdir or (workdirs[0] if workdirs else None)
  if free and template is None:
    raise ValueError("training-free rows need a base model: give "
                     "base_workdir or at least one workdir")
  rows, base_dirs = [], set()
  for workdir in workdirs:
    config = workdir_lib.saved_config(workdir)
    config.test_group_seed = test_group_seed
    rows.append(_row(config, workdir, missing))
    base_dirs.add(os.path.abspath(rows[-1].pop("base_dir")))
  for name, k, r, lost in free:
    config = workdir_lib.saved_config(template)
    config.test_group_seed = test_group_seed
    config.update(k=k, r=r, code=TRAINING_FREE[name]["code"])
    for group in ("berrut", "spline"):
      if group in TRAINING_FREE[name]:
        config[group] = ml_collections.ConfigDict(TRAINING_FREE[name][group])
    config.base_workdir = config.base_workdir or template
    rows.append(_row(config, template, lost))
    base_dirs.add(os.path.abspath(rows[-1].pop("base_dir")))
  if len(base_dirs) > 1:
    raise ValueError(f"the runs use different base models: {sorted(base_dirs)}"
                     "; train them with the same base_workdir")
  floor = {"code": "default prediction", "approach": "none",
           "degraded_accuracy": rows[0]["default_accuracy"]} if rows else None
  return rows, floor


def _row(config, workdir, missing):
  exp, base_state, stage2 = workdir_lib.restore(workdir, config)
  lost = min(config.r if missing is None else missing, config.r)
  results = metrics.evaluate_split(exp, base_state, stage2, exp.dataset.test,
                                   seed=config.test_group_seed, missing=lost)
  trained = exp.approach.trains
  search = results.get("spline_search")
  row = {"code": search["code"] if search else exp.code.name,
         "family": family(config), "approach": exp.approach.name,
         "k": config.k, "r": config.r, "missing": lost,
         "workdir": workdir if trained else None,
         "encoder": config.learned.encoder
                    if exp.approach.name == "learned" else None,
         "base_dir": exp.base_dir,
         "default_accuracy": results["default_accuracy"]}
  row.update({f: results[f] for f in _FIELDS})
  if search:
    row["spline_search"] = search
  return row


def family(config) -> str:
  """The line a config's rows make in the plot (codes of any k and r)."""
  if config.code == "berrut":
    systematic = config.get("berrut", {}).get("systematic", True)
    return "Berrut, systematic" if systematic else "Berrut, ApproxIFER"
  if config.code == "spline":
    return "spline" + (", lambdas on validation"
                       if metrics.searches_spline_lambdas(config) else "")
  if config.code == "learned":
    return f"learned [{config.learned.encoder}]"
  return f"{config.code} parity models"


def to_markdown(rows, floor) -> str:
  """A table with both A_d conventions: erased slots, all k slots."""
  lines = ["| code | approach | k | r | missing | A_a | A_d | A_d, all k | "
           "recon. acc. |", "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(
        f"| {row['code']} | {row['approach']} | {row['k']} | {row['r']} | "
        f"{row['missing']} | {100 * row['available_accuracy']:.2f} | "
        f"{100 * row['degraded_accuracy']:.2f} | "
        f"{100 * row['degraded_accuracy_all_slots']:.2f} | "
        f"{100 * row['reconstruction_accuracy']:.2f} |")
  if floor:
    lines.append(f"| default prediction | none | any | 0 | any | | "
                 f"{100 * floor['degraded_accuracy']:.2f} | | |")
  return "\n".join(lines) + "\n"


def plot(rows, floor, path, field="degraded_accuracy"):
  """`field` (A_d) against k, one line per code family, one panel per
  number of missing outputs."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = sorted({row["missing"] for row in rows})
  # One colour per family in every panel, even where a family has no rows.
  colors = {name: f"C{i}" for i, name in
            enumerate(sorted({row["family"] for row in rows}))}
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5),
                           sharey=True, squeeze=False)
  handles = {}
  for ax, lost in zip(axes[0], panels):
    families = {}
    for row in rows:
      if row["missing"] == lost:
        families.setdefault(row["family"], []).append(
            (row["k"], 100 * row[field]))
    for name, points in sorted(families.items()):
      ks, accs = zip(*sorted(points))
      handles[name], = ax.plot(ks, accs, "o-", color=colors[name], label=name)
    if floor:
      handles["default prediction"] = ax.axhline(
          100 * floor["degraded_accuracy"], color="gray", ls="--",
          label="default prediction")
    ax.set_title(f"{lost} missing", fontsize=9)
    ax.set_xlabel("k")
    ax.set_xticks(sorted({r["k"] for r in rows}))
  axes[0][0].set_ylabel(("A_d, all k outputs" if field.endswith("all_slots")
                         else "degraded accuracy A_d") + " (%)")
  axes[0][-1].legend(list(handles.values()), list(handles), fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def merge(old_rows, new_rows):
  """`old_rows` (e.g. `read`'s) with `new_rows` added; a new row replaces an
  old one of the same family, k, r and missing, so adding rows twice changes
  nothing. Both lists must come from one base model: F's test accuracy
  (`base_accuracy`) must be the same in every row."""
  bases = {row["base_accuracy"] for row in [*old_rows, *new_rows]}
  if len(bases) > 1:
    raise ValueError(f"the rows come from different base models (F's test "
                     f"accuracy {sorted(bases)}); merge rows of one F only")
  key = lambda row: (row["family"], row["k"], row["r"], row["missing"])
  replaced = {key(row) for row in new_rows}
  return [row for row in old_rows if key(row) not in replaced] + list(new_rows)


def read(out_dir):
  """`(rows, floor)` from the compare.json that `write` left in `out_dir`."""
  with open(os.path.join(out_dir, "compare.json")) as f:
    saved = json.load(f)
  return saved["rows"], saved["default"]


def write(rows, floor, out_dir):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "compare.json"), "w") as f:
    json.dump({"rows": rows, "default": floor}, f, indent=2)
  with open(os.path.join(out_dir, "compare.md"), "w") as f:
    f.write(to_markdown(rows, floor))
  plot(rows, floor, os.path.join(out_dir, "compare.png"))
  plot(rows, floor, os.path.join(out_dir, "compare_all_slots.png"),
       field="degraded_accuracy_all_slots")
  return np.array([r["degraded_accuracy"] for r in rows])
