"""From a config to the pieces of an experiment: data, task, model, code and
approach, each checked and chosen once.

Workdir layout: `config.json`, `base/` (checkpoints of F; or
`config.base_workdir/base`), `stage2/` (parity models or learned code),
`metrics.jsonl`, `eval.json`.
"""

import json
import os
from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from jaxcc import approaches
from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import models
from jaxcc import tasks
from jaxcc import training

CODES = ("summation", "linear", "concatenation", "learned", "berrut",
         "spline")
CONFIG_FILE = "config.json"
# How a spline code's name ends when evaluation chooses its lambdas.
LAMBDAS_ON_VALIDATION = "lambdas chosen on validation"


class Experiment(NamedTuple):
  config: Any
  dataset: data.Dataset
  task: tasks.Task
  model: models.Model
  code: codes.Code
  approach: approaches.Approach
  base_dir: str
  stage2_dir: str


def setup(config, workdir: str) -> Experiment:
  """Validates `config`, loads its data and builds the experiment."""
  code, approach = choose(config)
  dataset = data.load(config.dataset, validation_size=config.validation_size,
                      seed=config.data_seed, data_dir=config.data_dir or None,
                      image_size=config.image_size,
                      lazy=config.input_pipeline != "memory")
  task = tasks.for_dataset(dataset)
  if (task.name == data.LOCALIZATION and approach.name == "learned" and
      config.learned.loss != "mse-base"):
    raise ValueError(f"{config.dataset} is a localisation (regression) task: "
                     f"learned.loss must be 'mse-base', got "
                     f"{config.learned.loss!r}")
  dtype = jnp.bfloat16 if config.mixed_precision else jnp.float32
  model = models.get(config.model, dataset.input_shape, dataset.num_outputs,
                     dtype=dtype)
  base_root = config.base_workdir or workdir
  return Experiment(config=config, dataset=dataset, task=task, model=model,
                    code=code, approach=approach,
                    base_dir=os.path.join(base_root, "base"),
                    stage2_dir=os.path.join(workdir, "stage2"))


def choose(config) -> tuple:
  """The config's `(code, approach)`, after checking every field that needs
  no data; raises `ValueError` on one that cannot work."""
  if config.code not in CODES:
    raise ValueError(f"unknown code {config.code!r}; known: {list(CODES)}")
  erasures.check_k_r(config.k, config.r)
  loops = [loop.value for loop in training.EpochLoop]
  if config.epoch_loop not in loops:
    raise ValueError(f"epoch_loop must be one of {loops}, got "
                     f"{config.epoch_loop!r}")
  for name in ("base.epochs", "parity.epochs", "base.batch_size",
               "parity.batch_size", "eval_every"):
    value = field(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  for name in ("base.learning_rate", "parity.learning_rate"):
    if not field(config, name) > 0:
      raise ValueError(f"{name} must be > 0, got {field(config, name)!r}")
  for name in ("base.weight_decay", "parity.weight_decay",
               "checkpoint_every_secs"):
    if not field(config, name) >= 0:
      raise ValueError(f"{name} must be >= 0, got {field(config, name)!r}")
  # Configs saved before the berrut and spline fields existed lack them.
  berrut, spline = config.get("berrut", {}), config.get("spline", {})
  code = make_code(config.code, config.k, config.r,
                   generator=config.generator, encoder=config.learned.encoder,
                   decoder_width=approaches.stage2_option(
                       config, "learned.decoder_width"),
                   systematic=berrut.get("systematic", True),
                   lambdas=None if spline.get("search", True) else (
                       spline.lambda_encoder, spline.lambda_decoder))
  return code, approaches.from_config(config)


def make_code(name: str, k: int, r: int, *, generator: str = "random",
              encoder: str = "mlp", decoder_width: int = 1,
              systematic: bool = True,
              lambdas: Optional[tuple] = ()) -> codes.Code:
  """The code called `name` (one of `CODES`) for k data and r parities.

  `encoder` and `decoder_width` shape a learned code; `systematic` chooses
  the Berrut variant; `lambdas` are the spline code's
  `(lambda_encoder, lambda_decoder)` (empty: its defaults), or None for
  lambdas that evaluation chooses on the validation split
  (`metrics.evaluate_split`): the code then has the default lambdas and a
  name that ends with `LAMBDAS_ON_VALIDATION`.
  """
  if name in ("summation", "concatenation") and r != 1:
    raise ValueError(f"the {name} code has r = 1, got r={r}" + (
        "; use code=linear for more parities" if name == "summation" else ""))
  if name == "summation":
    return codes.summation(k)
  if name == "linear":
    return codes.linear(k, r, generator)
  if name == "concatenation":
    return codes.concatenation(k)
  if name == "berrut":
    return codes.berrut(k, r, systematic=systematic)
  if name == "spline":
    if lambdas is None:
      return codes.spline(k, r)._replace(
          name=f"spline(k={k}, r={r}, {LAMBDAS_ON_VALIDATION})")
    return codes.spline(k, r, *lambdas)
  if name == "learned":
    return codes.learned(k, r, encoder=encoder, decoder_width=decoder_width)
  raise ValueError(f"unknown code {name!r}; known: {list(CODES)}")


def write_config(config, workdir: str) -> None:
  """Saves `config` as the workdir's `config.json`."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json(indent=2))



def field(config, dotted: str):
  """The value of a dotted config field, e.g. "parity.epochs"."""
  for part in dotted.split("."):
    config = config[part]
  return config
