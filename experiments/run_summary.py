"""One line per finished run: its final validation A_d (metrics.jsonl, what a
recipe is chosen by) and its test A_d (eval.json), in %.

  python experiments/run_summary.py runs/recipes/mnist-mlp/k2-paper-s0
  python experiments/run_summary.py --available RUN...  # also test A_a

prints `<run> val A_d <v> [test A_a <a>] test A_d <d>` for each run
(experiments/recipes_more.sh and learned_recipes.sh call it after each run).
"""

import argparse
import json
import os


def summary(workdir, available=False) -> str:
  """The summary line of the run in `workdir`."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  val = [r for r in rows if "val_degraded_accuracy" in r][-1]
  with open(os.path.join(workdir, "eval.json")) as f:
    test = json.load(f)
  fields = [("val A_d", val["val_degraded_accuracy"])]
  if available:
    fields.append(("test A_a", test["available_accuracy"]))
  fields.append(("test A_d", test["degraded_accuracy"]))
  return " ".join([workdir] + [f"{name} {round(100 * value, 2)}"
                               for name, value in fields])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+")
  parser.add_argument("--available", action="store_true",
                      help="also print the test A_a")
  args = parser.parse_args()
  for workdir in args.runs:
    print(summary(workdir, args.available))


if __name__ == "__main__":
  main()
