"""Validation A_d over epochs, mean ± std over seeds (issue 12).

Reads the `metrics.jsonl` of the runs `experiments/recipes.sh` wrote and
draws one panel per k: one line per recipe (run names `k<k>-<recipe>-s<seed>`,
or with `--learned` the k = 2 learned codes of experiments/learned_recipes.sh,
`learned-<recipe>-s<seed>`), each the mean over the seeds with a band of ± one
standard deviation.

  python experiments/recipe_curves.py --runs runs/recipes/mnist-mlp \
      --recipes paper,combo,concat-kl-t4-w4-e50 --out docs/recipes/mnist.png
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


_LABELS = {"paper": "paper's recipe (summation)",
           "combo": "best summation recipe",
           "concat-kl-t4-w4-e50": "concatenation + decoded KL, width 4",
           "concat-kl-t4-w4-cos-e150":
               "concatenation + decoded KL, width 4, cosine, 150 epochs",
           "kl-cosine-e60": "learned: KL, cosine, 60 epochs",
           "xent-cosine-d4-e150":
               "learned: label cross-entropy, 4x decoder, cosine, 150 epochs"}


def curve(workdir):
  """(epochs, validation A_d in %) of one run's stage 2."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  rows = [r for r in rows if r.get("stage") == "stage2"
          and "val_degraded_accuracy" in r]
  return (np.array([r["epoch"] for r in rows]),
          100 * np.array([r["val_degraded_accuracy"] for r in rows]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--ks", default="2,3,4")
  parser.add_argument("--recipes", default="paper,combo")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--learned", action="store_true",
                      help="learned codes (k = 2): learned-<recipe>-s<seed>")
  args = parser.parse_args()
  ks = [2] if args.learned else [int(k) for k in args.ks.split(",")]
  seeds = args.seeds.split(",")
  fig, axes = plt.subplots(1, len(ks), figsize=(max(4 * len(ks), 6), 3.2),
                           squeeze=False)
  for ax, k in zip(axes[0], ks):
    for recipe in args.recipes.split(","):
      prefix = "learned-" if args.learned else f"k{k}-"
      runs = [curve(f"{args.runs}/{prefix}{recipe}-s{s}") for s in seeds]
      epochs = runs[0][0]
      values = np.stack([v for _, v in runs])
      mean, std = values.mean(0), values.std(0, ddof=1)
      label = _LABELS.get(recipe, recipe)
      ax.plot(epochs, mean, label=label)
      ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
      print(f"k={k} {recipe}: " + ", ".join(
          f"{e}: {m:.2f}±{s:.2f}" for e, m, s in zip(epochs, mean, std)))
    ax.set_title(f"k = {k}")
    ax.set_xlabel("stage-2 epoch")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(f"validation A_d (%)\nmean ± std, {len(seeds)} seeds")
  handles, labels = axes[0][0].get_legend_handles_labels()
  columns = min(len(labels), len(ks))
  fig.legend(handles, labels, loc="lower center", ncol=columns,
             fontsize="small")
  rows = -(-len(labels) // columns)
  fig.tight_layout(rect=(0, 0.08 * rows, 1, 1))  # Room for the legend below.
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
  main()
