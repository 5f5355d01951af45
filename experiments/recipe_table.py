"""Test A_d over seeds of the recipe runs (issue 12), as a Markdown table.

  python experiments/recipe_table.py --runs runs/recipes/mnist-mlp \
      --recipes concat-kl-t4-w4-e50 --ks 2,3,4 --seeds 0,1,2

reads `<runs>/k<k>-<recipe>-s<seed>/eval.json` (and for learned codes
`--learned`: `<runs>/learned-<recipe>-s<seed>/eval.json`); seeds whose run
has not finished are left out and the table says how many it averages.
"""

import argparse
import json
import os

import numpy as np
import recipe_curves  # experiments/, beside this script


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", required=True)
  parser.add_argument("--recipes", required=True)
  parser.add_argument("--ks", default="2,3,4")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--learned", action="store_true")
  args = parser.parse_args()
  print("| k | recipe | A_a | val. A_d (mean) | test A_d per seed | seeds |"
        " test A_d mean ± std |")
  print("|---|---|---|---|---|---|---|")
  ks = ["2"] if args.learned else args.ks.split(",")
  for k in ks:
    for recipe in args.recipes.split(","):
      results = []
      for seed in args.seeds.split(","):
        run = (f"learned-{recipe}-s{seed}" if args.learned
               else f"k{k}-{recipe}-s{seed}")
        path = os.path.join(args.runs, run, "eval.json")
        if os.path.exists(path):
          with open(path) as f:
            e = json.load(f)
          results.append((100 * e["available_accuracy"],
                          100 * e["degraded_accuracy"],
                          recipe_curves.curve(os.path.dirname(path))[1][-1]))
      if not results:
        continue
      d = np.array([r[1] for r in results])
      spread = f" ± {d.std(ddof=1):.2f}" if len(d) > 1 else ""
      val = np.mean([r[2] for r in results])
      print(f"| {k} | {recipe} | {results[0][0]:.2f} | {val:.2f} | "
            f"{' / '.join(f'{x:.2f}' for x in d)} | {len(d)} | "
            f"{d.mean():.2f}{spread} |")


if __name__ == "__main__":
  main()
