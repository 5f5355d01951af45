"""From a config to the pieces of an experiment: data, models, code, states.

Shared by training and evaluation, so both build exactly the same objects.
Workdir layout: `base/` (checkpoints of F; or `config.base_workdir/base`),
`stage2/` (parity models or learned code), `metrics.jsonl`, `eval.json`.
"""

import json
import os
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcc import checkpoints
from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import losses
from jaxcc import models

APPROACHES = ("parity-model", "learned", "none")
# Codes whose parities go through parity models, the learned code (trained
# through the frozen F), and codes whose parities F itself computes.
_CODE_APPROACH = {"summation": "parity-model", "linear": "parity-model",
                  "concatenation": "parity-model", "learned": "learned",
                  "berrut": "none"}


class TrainState(NamedTuple):
  """What one training stage checkpoints. `batch_stats` is `{}` without BN."""
  params: Any
  batch_stats: Any
  opt_state: Any


class Experiment(NamedTuple):
  config: Any
  dataset: data.Dataset
  model: models.Model
  code: codes.Code
  approach: str
  base_dir: str
  stage2_dir: str


def setup(config, workdir: str) -> Experiment:
  """Validates `config` and builds the experiment it describes."""
  code_name = config.code
  if code_name not in _CODE_APPROACH:
    raise ValueError(f"unknown code {code_name!r}; known: "
                     f"{sorted(_CODE_APPROACH)}")
  erasures.check_k_r(config.k, config.r)
  approach = _CODE_APPROACH[code_name]
  if approach == "learned":
    losses.get(config.learned.loss)
  if config.parity.target not in ("base", "label"):
    raise ValueError(f"parity.target must be 'base' or 'label', got "
                     f"{config.parity.target!r}")
  if config.parity.init not in ("scratch", "base"):
    raise ValueError(f"parity.init must be 'scratch' or 'base', got "
                     f"{config.parity.init!r}")
  code = make_code(config)
  dataset = data.load(config.dataset, validation_size=config.validation_size,
                      seed=config.seed, data_dir=config.data_dir or None,
                      image_size=config.get("image_size", 0))
  if (dataset.task == data.LOCALIZATION and approach == "learned" and
      config.learned.loss != "mse-base"):
    raise ValueError(f"{config.dataset} is a localisation (regression) task: "
                     f"learned.loss must be 'mse-base', got "
                     f"{config.learned.loss!r}")
  dtype = jnp.bfloat16 if config.get("mixed_precision") else jnp.float32
  model = models.get(config.model, dataset.input_shape, dataset.num_outputs,
                     dtype=dtype)
  base_root = config.base_workdir or workdir
  return Experiment(config=config, dataset=dataset, model=model, code=code,
                    approach=approach,
                    base_dir=os.path.join(base_root, "base"),
                    stage2_dir=os.path.join(workdir, "stage2"))


def make_code(config) -> codes.Code:
  k, r = config.k, config.r
  if config.code == "summation":
    if r != 1:
      raise ValueError(f"the summation code has r = 1, got r={r}; use "
                       "code=linear for more parities")
    return codes.summation(k)
  if config.code == "linear":
    return codes.linear(k, r, config.get("generator", "random"))
  if config.code == "concatenation":
    if r != 1:
      raise ValueError(f"the concatenation code has r = 1, got r={r}")
    return codes.concatenation(k)
  if config.code == "berrut":
    return codes.berrut(k, r)
  return codes.learned(k, r, encoder=config.learned.encoder)


def optimizer(stage_config) -> optax.GradientTransformation:
  """Adam with L2 regularisation added to the gradient (PyTorch semantics)."""
  return optax.chain(optax.add_decayed_weights(stage_config.weight_decay),
                     optax.adam(stage_config.learning_rate))


def variables(params, batch_stats) -> dict:
  return {"params": params, **({"batch_stats": batch_stats}
                               if batch_stats else {})}


def init_base(exp: Experiment, key) -> TrainState:
  v = exp.model.init(key)
  params, stats = v["params"], v.get("batch_stats", {})
  return TrainState(params, stats, optimizer(exp.config.base).init(params))


def init_stage2(exp: Experiment, key, base_state: TrainState) -> TrainState:
  """Parity models stacked on a leading axis of size r, or the code params."""
  cfg = exp.config
  if exp.approach == "learned":
    params = exp.code.init(key, exp.dataset.input_shape,
                           (exp.model.num_outputs,))
    return TrainState(params, {}, optimizer(cfg.parity).init(params))
  if cfg.parity.init == "base":
    stacked = jax.tree.map(lambda a: jnp.stack([a] * cfg.r),
                           (base_state.params, base_state.batch_stats))
  else:
    vs = jax.vmap(exp.model.init)(jax.random.split(key, cfg.r))
    stacked = (vs["params"], vs.get("batch_stats", {}))
  return TrainState(stacked[0], stacked[1],
                    optimizer(cfg.parity).init(stacked[0]))


def restore_base(exp: Experiment) -> TrainState:
  like = jax.eval_shape(lambda: init_base(exp, jax.random.PRNGKey(0)))
  return _restore(exp.base_dir, like, "base model")


def restore_stage2(exp: Experiment, base_state: TrainState) -> TrainState:
  like = jax.eval_shape(
      lambda: init_stage2(exp, jax.random.PRNGKey(0), base_state))
  return _restore(exp.stage2_dir, like, f"{exp.approach} stage")


def _restore(directory, like, what):
  ckpt = checkpoints.Checkpointer(directory)
  if ckpt.latest_step() is None:
    raise ValueError(f"no trained {what} in {directory}: run train.py with "
                     "this config and workdir first")
  state, _ = ckpt.restore(like)
  return state


def append_metrics(workdir: str, record: dict) -> None:
  if jax.process_index():
    return
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")


def log(message: str) -> None:
  if jax.process_index():
    return
  print(message, file=sys.stdout, flush=True)
