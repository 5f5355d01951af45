"""jaxcc against the original PyTorch trainer, on one machine, in one run.

  python benchmarks/original_trainer.py --original DIR \
      [--mnist ../shared/data/mnist] [--repeats 3] [--original_epochs 1] \
      [--torch_epochs 2] [--epochs 6] [--out runs/benchmarks]

The task: a k = 2 summation-code parity model (add/sub) on the Base-MLP
(784-200-100-10), MNIST, 64 groups a step, Adam (1e-3, L2 1e-5), MSE. Four
rows, measured in interleaved rounds (the order reversed every other round,
so a change in machine load hits all alike); each row is the median over
rounds of a per-round median:

- `original`: the trainer of github.com/Thesys-lab/parity-models, run
  unmodified from `DIR` (a checkout, never part of this repository; `DIR`
  or `DIR/train` holds its `train.py`) with its own command line, `python
  train.py CONFIG SAVE_DIR`, on a config like its `config/mnist-add.json`
  narrowed to k = 2, the Base-MLP and `--original_epochs` epochs. Its tqdm
  bar reports each training epoch's it/s (tqdm's `TQDM_SMOOTHING=0`
  setting: the epoch's mean rate, not a moving average). Groups/s = it/s x
  the epoch's groups / its steps.
- `torch loop`: a plain PyTorch loop of the same layers and step (random
  groups from an in-memory tensor, no accuracy bookkeeping); epoch groups/s.
- `jaxcc train.py`: `train.py`'s parity stage (F trained once, untimed, for
  one epoch and reused through `base_workdir`), the per-epoch groups/s of
  `metrics.jsonl` (median over epochs 2.., the first compiles) and the
  stage's `summary` line (compile, validation, checkpoints included).
- `jaxcc step`: `benchmark.py`'s `parity_step` row (mlp, k = 2).

What the original needs here, all outside the repository: torch and
torchvision; MNIST in torchvision's raw layout under `DIR/train/data/mnist`,
which this script writes from `--mnist` (.npz) so that the trainer's
`download=True` finds it and downloads nothing; and, where torchvision's C++
ops cannot load (the PyPI torchvision built for CUDA beside a CPU-only
torch), the two op schemas (`nms`, `qnms`) its import registers fake
kernels for, declared before the trainer starts. The trainer uses only
torchvision's MNIST dataset and `ToTensor`. torch is not a jaxcc
dependency: install it beside jaxcc to run this script.

Writes `<out>/original_trainer.json` and `.md` after every round (a stopped
run keeps the rounds it finished); prints the table.
"""

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

_ORIGINAL = flags.DEFINE_string(
    "original", None, "Checkout of Thesys-lab/parity-models (or its train/).")
_MNIST = flags.DEFINE_string("mnist", "../shared/data/mnist",
                             "Directory with MNIST train.npz and test.npz.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved rounds.")
_ORIGINAL_EPOCHS = flags.DEFINE_integer(
    "original_epochs", 1, "Epochs of the original trainer in each round.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 6, "Epochs of train.py's parity stage in each round.")
_TORCH_EPOCHS = flags.DEFINE_integer(
    "torch_epochs", 2, "Epochs of the plain PyTorch loop in each round.")
_OUT = flags.DEFINE_string("out", "runs/benchmarks", "Directory for results.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Scratch directory (default: a new temporary one).")

K, GROUPS, VALIDATION = 2, 64, 5000  # the original's k, batch, val split
TRAIN = 60_000 - VALIDATION  # MNIST training examples left for training
ROWS = ("original", "torch loop", "jaxcc train.py", "jaxcc step")
_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Run in the original trainer's directory: declares torchvision's `nms` and
# `qnms` ops when its C++ library cannot load (see the module docstring),
# then runs the trainer's train.py as `python train.py CONFIG SAVE_DIR`.
_LAUNCH = """
import glob, importlib.util, os, runpy, sys
import torch
tv = os.path.dirname(importlib.util.find_spec("torchvision").origin)
try:
  torch.ops.load_library(glob.glob(os.path.join(tv, "_C*.so"))[0])
except (OSError, IndexError):
  for op in ("nms", "qnms"):
    torch.library.define("torchvision::" + op, "(Tensor dets, Tensor scores, "
                         "float iou_threshold) -> Tensor")
sys.path.insert(0, os.getcwd())
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


def train_dir(original: str) -> str:
  """The directory of the original trainer's train.py."""
  for d in (os.path.join(original, "train"), original):
    if os.path.isfile(os.path.join(d, "parity_model_trainer.py")):
      return d
  raise ValueError(f"no parity_model_trainer.py in {original} or "
                   f"{original}/train: pass a Thesys-lab/parity-models "
                   "checkout as --original")


def write_mnist_raw(mnist_dir: str, root: str) -> None:
  """MNIST from `mnist_dir`'s .npz files as torchvision's raw IDX files."""
  raw = os.path.join(root, "MNIST", "raw")
  os.makedirs(raw, exist_ok=True)
  for split, prefix in (("train", "train"), ("test", "t10k")):
    with np.load(os.path.join(mnist_dir, f"{split}.npz")) as f:
      images, labels = f["image"][..., 0], f["label"].astype(np.uint8)
    with open(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), "wb") as out:
      out.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    with open(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), "wb") as out:
      out.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


def original_config(epochs: int) -> dict:
  """The original's config/mnist-add.json narrowed to k = 2, Base-MLP."""
  return {"num_epoch": epochs, "k_vals": [K],
          "enc_dec_types": [["coders.summation.AdditionEncoder",
                             "coders.summation.SubtractionDecoder"]],
          "datasets": ["mnist"], "models": ["base-mlp"],
          "losses": ["torch.nn.MSELoss"], "train_encoder": False,
          "train_parity_model": True, "train_decoder": False}


def epoch_rates(tqdm_text: str) -> list:
  """it/s of every finished training epoch in the trainer's tqdm output."""
  rates = {}  # epoch -> it/s (tqdm prints a finished bar twice)
  for line in tqdm_text.replace("\r", "\n").split("\n"):
    if not line.startswith("Epoch ") or ". train." not in line or (
        "it/s]" not in line):
      continue
    done, total = line.split("| ")[-1].split(" ")[0].split("/")
    if done == total:
      rates[line.split(".")[0]] = float(
          line.rsplit(", ", 1)[-1].split("it/s")[0])
  return list(rates.values())


def run_original(directory: str, scratch: str, epochs: int, tag: str) -> dict:
  """One run of the unmodified original trainer; its epochs' groups/s."""
  config = os.path.join(scratch, "original_config.json")
  with open(config, "w") as f:
    json.dump(original_config(epochs), f)
  env = dict(os.environ, TQDM_SMOOTHING="0")
  began = time.monotonic()
  done = subprocess.run(
      [sys.executable, "-c", _LAUNCH, config,
       os.path.join(scratch, f"original-{tag}")],
      cwd=directory, env=env, capture_output=True, text=True, check=False)
  seconds = time.monotonic() - began
  if done.returncode:
    raise RuntimeError(f"the original trainer failed:\n{done.stderr[-3000:]}")
  it_per_sec = epoch_rates(done.stderr)
  # An epoch draws every training example once: batches of 64 k-groups,
  # the last one partial.
  groups, steps = TRAIN // K, -(-TRAIN // (K * GROUPS))
  return {"it_per_sec": it_per_sec,
          "groups_per_sec": [r * groups / steps for r in it_per_sec],
          "process_seconds": seconds}


def run_torch_loop(mnist_dir: str, original: str, epochs: int) -> dict:
  """A plain PyTorch loop of the original's layers and step."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  with np.load(os.path.join(mnist_dir, "train.npz")) as f:
    images = torch.from_numpy(
        f["image"][VALIDATION:].reshape(-1, 784).astype(np.float32) / 255)

  def mlp():
    return nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100),
                         nn.ReLU(), nn.Linear(100, 10))
  base = mlp()
  base.load_state_dict({
      name.removeprefix("nn."): value for name, value in torch.load(
          os.path.join(original, "base_model_trained_files", "mnist",
                       "base-mlp", "model.t7")).items()})
  with torch.no_grad():
    outputs = base(images)
  model = mlp()
  for layer in model:
    if isinstance(layer, nn.Linear):
      nn.init.normal_(layer.weight, 0, 0.01)
      nn.init.zeros_(layer.bias)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
  loss_fn = nn.MSELoss()
  steps = len(images) // (K * GROUPS)
  rates = []
  for _ in range(epochs):
    began = time.perf_counter()
    order = torch.randperm(len(images))[:steps * K * GROUPS]
    total = torch.zeros(())
    for idx in order.view(steps, GROUPS, K):
      parity = images[idx].sum(1)
      target = outputs[idx].sum(1)
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(parity), target)
      loss.backward()
      opt.step()
      total += loss.detach()
    float(total)
    rates.append(steps * GROUPS / (time.perf_counter() - began))
  return {"groups_per_sec": rates, "threads": torch.get_num_threads()}


def _jaxcc_config(mnist_dir: str, epochs: int) -> str:
  return (f"configs/parity.py:dataset=npz:{os.path.abspath(mnist_dir)},"
          f"k={K},batch_size={GROUPS},base_epochs=1,epochs={epochs}")


def train_base(mnist_dir: str, scratch: str) -> str:
  """F for the jaxcc runs: `train.py` with one epoch per stage, untimed."""
  workdir = os.path.join(scratch, "jaxcc-base")
  _run([sys.executable, "train.py", "--config", _jaxcc_config(mnist_dir, 1),
        "--workdir", workdir])
  return workdir


def run_train_py(mnist_dir: str, base: str, scratch: str, epochs: int,
                 tag: str) -> dict:
  """`train.py`'s parity stage; per-epoch and whole-stage groups/s."""
  workdir = os.path.join(scratch, f"jaxcc-{tag}")
  _run([sys.executable, "train.py", "--config",
        _jaxcc_config(mnist_dir, epochs), f"--config.base_workdir={base}",
        "--workdir", workdir])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  stage = [r for r in records if r.get("stage") == "stage2"]
  per_epoch = [r["examples_per_sec"] for r in stage if not r.get("summary")]
  summary = [r for r in stage if r.get("summary")][-1]
  return {"groups_per_sec": per_epoch[1:], "first_epoch": per_epoch[0],
          "stage_groups_per_sec": summary["examples_per_sec"],
          "stage_seconds": summary["seconds"]}


def run_step(scratch: str, tag: str) -> dict:
  """`benchmark.py`'s parity-step row (mlp, k = 2, 64 groups)."""
  name = f"step-{tag}"
  _run([sys.executable, "benchmark.py", "--out", scratch, "--config",
        f"configs/benchmark.py:models=mlp,ks={K},rows=parity,batch={GROUPS},"
        f"repeats=5,name={name}"])
  with open(os.path.join(scratch, f"{name}.json")) as f:
    result = json.load(f)
  row = result["rows"][0]
  return {"groups_per_sec": [row["throughput"]],
          "min_max": [row["throughput_min"], row["throughput_max"]],
          "peak_gflops": result["peak"]["flops_per_sec"] / 1e9}


def _run(command) -> None:
  done = subprocess.run(command, cwd=_REPO, capture_output=True, text=True,
                        check=False)
  if done.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def summarize(rounds: list) -> dict:
  """Per row: each round's median groups/s, and their median."""
  table = {}
  for row in ROWS:
    per_round = [statistics.median(r[row]["groups_per_sec"]) for r in rounds]
    table[row] = {"rounds": per_round, "median": statistics.median(per_round),
                  "min": min(per_round), "max": max(per_round)}
  it_s = [statistics.median(r["original"]["it_per_sec"]) for r in rounds]
  table["original"]["it_per_sec"] = statistics.median(it_s)
  table["jaxcc train.py"]["stage"] = statistics.median(
      r["jaxcc train.py"]["stage_groups_per_sec"] for r in rounds)
  return table


def markdown(results: dict) -> str:
  t = results["table"]
  base = t["original"]["median"]
  lines = [
      f"Load average {_load(results['loadavg_start'])} at the start, "
      f"{_load(results['loadavg_end'])} at the end; {results['cpus']} CPUs; "
      f"{len(results['rounds'])} interleaved rounds; torch "
      f"{results['torch']}, {results['torch_threads']} threads.", "",
      "| row | groups/s (median of rounds) | rounds (min-max) | x original |",
      "|---|---|---|---|"]
  for row in ROWS:
    extra = ""
    if row == "original":
      extra = f" ({t[row]['it_per_sec']:.1f} it/s)"
    lines.append(f"| {row} | {t[row]['median']:,.0f}{extra} | "
                 f"{t[row]['min']:,.0f}-{t[row]['max']:,.0f} | "
                 f"{t[row]['median'] / base:.1f} |")
  lines.append(f"| jaxcc train.py, whole stage | "
               f"{t['jaxcc train.py']['stage']:,.0f} | - | "
               f"{t['jaxcc train.py']['stage'] / base:.1f} |")
  lines.append("")
  lines.append(f"train.py per epoch / bare step: "
               f"{t['jaxcc train.py']['median'] / t['jaxcc step']['median']:.2f}")
  return "\n".join(lines) + "\n"


def _load(values) -> str:
  return "/".join(f"{v:.1f}" for v in values)


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  if _ORIGINAL.value is None:
    raise app.UsageError("--original DIR is required")
  directory = train_dir(_ORIGINAL.value)
  scratch = _WORKDIR.value or tempfile.mkdtemp(prefix="original_trainer_")
  os.makedirs(scratch, exist_ok=True)
  write_mnist_raw(_MNIST.value, os.path.join(directory, "data", "mnist"))
  results = {"loadavg_start": list(os.getloadavg()), "cpus": os.cpu_count(),
             "torch": torch.__version__, "rounds": []}
  print(f"scratch {scratch}; training F for the jaxcc runs", flush=True)
  base = train_base(_MNIST.value, scratch)
  jobs = {
      "original": lambda tag: run_original(directory, scratch,
                                           _ORIGINAL_EPOCHS.value, tag),
      "torch loop": lambda tag: run_torch_loop(_MNIST.value, directory,
                                               _TORCH_EPOCHS.value),
      "jaxcc train.py": lambda tag: run_train_py(_MNIST.value, base, scratch,
                                                 _EPOCHS.value, tag),
      "jaxcc step": lambda tag: run_step(scratch, tag)}
  for i in range(_REPEATS.value):
    measured = {"loadavg": list(os.getloadavg())}
    for row in ROWS if i % 2 == 0 else ROWS[::-1]:
      measured[row] = jobs[row](f"r{i}")
      print(f"round {i + 1} {row}: groups/s "
            f"{[round(v) for v in measured[row]['groups_per_sec']]} "
            f"(load {_load(os.getloadavg())})", flush=True)
    results["rounds"].append(measured)
    table = write(results, _OUT.value)  # after every round: a stopped run
  print(table)                          # keeps the rounds it finished


def write(results: dict, out: str) -> str:
  """Summarizes the rounds so far into `out`; returns the table."""
  results["loadavg_end"] = list(os.getloadavg())
  results["torch_threads"] = results["rounds"][0]["torch loop"]["threads"]
  results["table"] = summarize(results["rounds"])
  table = markdown(results)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "original_trainer.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(out, "original_trainer.md"), "w") as f:
    f.write(table)
  return table


if __name__ == "__main__":
  app.run(main)
