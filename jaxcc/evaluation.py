"""Evaluation of a trained workdir: `eval.json`, a table and a plot of A_o(f).

The metrics are those of `jaxcc.metrics` on the test split (see there for the
protocol and the fields); eval.json adds what was evaluated (k, r, dataset,
model, code, approach, task).
"""

import json
import os

import jax

from jaxcc import logs
from jaxcc import metrics
from jaxcc import workdir as workdir_lib

EVAL_FILE = "eval.json"
PLOT_FILE = "overall_accuracy.png"


def evaluate(config, workdir: str) -> dict:
  """Restores the trained stages, writes `eval.json` and a plot of A_o(f)."""
  exp, base_state, stage2_state = workdir_lib.restore(workdir, config)
  results = metrics.evaluate_split(exp, base_state, stage2_state,
                                   exp.dataset.test,
                                   seed=config.test_group_seed,
                                   missing=config.eval_missing)
  results.update(k=config.k, r=config.r, dataset=config.dataset,
                 model=config.model, code=exp.code.name,
                 approach=exp.approach.name, task=exp.task.name)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, EVAL_FILE), "w") as f:
      json.dump(results, f, indent=2)
    plot_overall(results, exp.task.primary, os.path.join(workdir, PLOT_FILE))
  logs.info(format_table(results, exp.task))
  return results


def format_table(results: dict, task) -> str:
  """The results as an aligned two-column table."""
  rows = [
      ("dataset / model", f"{results['dataset']} / {results['model']}"),
      ("code", f"{results['code']} ({results['approach']})"),
  ] + task.format_rows(results)
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def plot_overall(results: dict, metric: str, path: str) -> None:
  """Overall `metric` A_o(f) against F's own, as the paper's Fig. 9."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  scale, unit = (100, "accuracy (%)") if metric == "accuracy" else (
      1, metric.replace("_", " "))
  overall = results[f"overall_{metric}"]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot([float(f) for f in overall], [scale * v for v in overall.values()],
          "o-", label="overall, with reconstructions")
  ax.axhline(scale * results[f"available_{metric}"], color="tab:orange",
             label="all predictions available")
  ax.axhline(scale * results[f"default_{metric}"], color="gray", ls="--",
             label="default prediction")
  ax.set_xscale("symlog", linthresh=0.01)
  ax.set_xlabel("fraction f of unavailable predictions")
  ax.set_ylabel(f"overall {unit}")
  ax.set_title(f"{results['dataset']}, {results['model']}, {results['code']}",
               fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
