"""Stage-2 approaches: what makes a code work for a non-linear F.

An `Approach` is chosen once from the config (`from_config`) and carries every
place where the approaches differ:

- parity models (paper §V): r networks F_P, stacked on a leading axis, trained
  with MSE toward the parity outputs the decoder expects (from F's outputs or
  from the true labels), or on a loss of the reconstructions decoded from
  them ("decoded-*"); they compute the parity outputs.
- a learned code (paper §IV): encoder and decoder trained through the frozen
  F over every erasure pattern; F computes the parity outputs.
- none: training-free codes (Berrut); F computes the parity outputs.
"""

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxcc import data
from jaxcc import erasures
from jaxcc import losses
from jaxcc import models
from jaxcc import training

PARITY_TARGETS = ("base", "label")
PARITY_INITS = ("scratch", "base")
PARITY_LOSSES = ("mse",) + tuple(training.PARITY_LOSSES)
# Stage-2 fields that configs saved before they existed lack (defaults).
_STAGE2_DEFAULTS = {"parity.loss": "mse", "parity.temperature": 1.0,
                    "parity.width": 1.0, "parity.schedule": "constant",
                    "parity.warmup_epochs": 0, "learned.patterns": "mean",
                    "learned.decoder_width": 1}


class Approach(NamedTuple):
  """Stage 2 of one approach, as functions.

  Attributes:
    name: "parity-model", "learned" or "none" (eval.json's `approach`).
    trains: whether there is a stage 2 to train.
    init: `(key, *, model, code, opt, input_shape, base_state) -> TrainState`.
    step: `(*, model, code, opt, normalize, mesh) -> step`, a
      `training` step over coding groups.
    arrays: `(*, task, split, outputs_NC, base_vars) -> dict`, the arrays
      (besides `images`) that the step reads.
    parity_network: `(base_vars, stage2_state) -> (variables, apply)`: what
      computes the parity outputs, `apply(model, variables, parities_BR) ->
      y_BRC`.
    code_params: `stage2_state -> params` of `code.encode` / `code.decode`.
    config_fields: the config fields (dotted) that shape the trained stage,
      beyond the code's: a workdir's stage 2 is bound to their values.
  """
  name: str
  trains: bool
  init: Optional[Callable]
  step: Optional[Callable]
  arrays: Optional[Callable]
  parity_network: Callable
  code_params: Callable
  config_fields: tuple = ()


def from_config(config) -> Approach:
  """The approach of `config.code`, with its stage-2 options checked."""
  stored = {name: _stored(config, name) for name in _STAGE2_DEFAULTS}
  p = {name: _STAGE2_DEFAULTS[name] if value is None else value
       for name, value in stored.items()}
  schedule = dict(schedule=p["parity.schedule"],
                  warmup_epochs=p["parity.warmup_epochs"],
                  epochs=config.parity.epochs)
  if config.code == "learned":
    approach = learned_code(config.learned.loss,
                            erasures.patterns(config.k, config.r),
                            patterns=p["learned.patterns"], **schedule)
  elif config.code in ("summation", "linear", "concatenation"):
    approach = parity_models(
        config.parity.target, config.parity.init, p["parity.loss"],
        temperature=p["parity.temperature"], width=p["parity.width"],
        dtype=jnp.bfloat16 if config.mixed_precision else jnp.float32,
        **schedule)
  else:
    return training_free()
  # A config saved before a field existed trained with its default.
  return approach._replace(config_fields=tuple(
      name for name in approach.config_fields
      if stored.get(name, True) is not None))


def parity_models(target: str = "base", init: str = "scratch",
                  loss: str = "mse", *, temperature: float = 1.0,
                  width: float = 1.0, schedule: str = "constant",
                  warmup_epochs: int = 0, epochs: Optional[int] = None,
                  dtype=jnp.float32) -> Approach:
  """Parity models: F's architecture, `width` times wider, initialised at
  random ("scratch") or from F ("base", width 1 only).

  `loss` "mse" trains toward the parity outputs the decoder expects, from
  F's outputs (`target` "base") or the true labels ("label"); a "decoded-*"
  loss (`training.decoded_parity_loss`, KL at `temperature`) trains on the
  reconstructions of every erasure pattern. `schedule` ("constant" or
  "cosine" with `warmup_epochs`) shapes the learning rate over `epochs`.
  """
  if target not in PARITY_TARGETS:
    raise ValueError(f"parity.target must be one of {PARITY_TARGETS}, got "
                     f"{target!r}")
  if init not in PARITY_INITS:
    raise ValueError(f"parity.init must be one of {PARITY_INITS}, got "
                     f"{init!r}")
  if loss not in PARITY_LOSSES:
    raise ValueError(f"parity.loss must be one of {PARITY_LOSSES}, got "
                     f"{loss!r}")
  if loss != "mse" and target != "base":
    raise ValueError(f"parity.target={target!r} applies to parity.loss="
                     f"'mse' only; got parity.loss={loss!r} (use "
                     "'decoded-xent-label' to train on the labels)")
  if not temperature > 0:
    raise ValueError(f"parity.temperature must be > 0, got {temperature!r}")
  if not width > 0:
    raise ValueError(f"parity.width must be > 0, got {width!r}")
  if init == "base" and width != 1:
    raise ValueError(f"parity.init='base' copies F, so parity.width must be "
                     f"1, got {width!r}")
  _check_schedule(schedule, warmup_epochs, epochs)
  parity_model = functools.lru_cache(maxsize=None)(
      lambda model: model if width == 1 else _widened(model, width, dtype))

  def init_state(key, *, model, code, opt, input_shape, base_state):
    if init == "base":
      stacked = jax.tree.map(lambda a: jnp.stack([a] * code.r),
                             (base_state.params, base_state.batch_stats))
    else:
      # Width 1 is F itself, built for its shape; a wider one needs it.
      shape = None if width == 1 else input_shape
      vs = jax.vmap(lambda key: parity_model(model).init(key, shape))(
          jax.random.split(key, code.r))
      stacked = (vs["params"], vs.get("batch_stats", {}))
    return training.TrainState(stacked[0], stacked[1], opt.init(stacked[0]))

  def step(*, model, code, opt, normalize, mesh):
    net = parity_model(model)

    def build(opt):
      if loss == "mse":
        return training.parity_step(net, code, opt, normalize, mesh)
      return training.decoded_parity_step(
          net, code, opt, loss, erasures.patterns(code.k, code.r), normalize,
          temperature, mesh)
    return training.scheduled_step(build, opt, schedule, warmup_epochs,
                                   epochs)

  def arrays(*, task, split, outputs_NC, base_vars):
    del base_vars
    if loss == "mse":
      return {"targets": outputs_NC if target == "base" else
                         task.label_targets(split.label)}
    if (task is not None and task.name == data.LOCALIZATION and
        loss != "decoded-mse"):
      raise ValueError(f"a localisation (regression) task needs parity.loss "
                       f"'mse' or 'decoded-mse', got {loss!r}")
    return {"outputs": outputs_NC, "labels": split.label}

  def stacked_apply(model, stacked_vars, parities_BR):
    return models.stacked_apply(parity_model(model), stacked_vars,
                                parities_BR)

  return Approach(
      name="parity-model", trains=True, init=init_state, step=step,
      arrays=arrays,
      parity_network=lambda base_vars, state: (
          models.variables(state.params, state.batch_stats),
          models.stacked_apply if width == 1 else stacked_apply),
      code_params=lambda state: {},
      config_fields=("parity.target", "parity.init", "parity.loss",
                     "parity.temperature", "parity.width",
                     "parity.schedule", "parity.warmup_epochs"))


def learned_code(loss: str, patterns_PN, *, patterns: str = "mean",
                 schedule: str = "constant", warmup_epochs: int = 0,
                 epochs: Optional[int] = None) -> Approach:
  """A learned encoder and decoder trained with `loss` over `patterns_PN`,
  their losses combined by `patterns` ("mean" or "worst",
  `losses.PATTERN_REDUCTIONS`), the learning rate following `schedule` (as
  in `parity_models`)."""
  losses.get(loss)
  losses.pattern_reduction(patterns)
  _check_schedule(schedule, warmup_epochs, epochs)

  def init_state(key, *, model, code, opt, input_shape, base_state):
    del base_state
    params = code.init(key, input_shape, (model.num_outputs,))
    return training.TrainState(params, {}, opt.init(params))

  def step(*, model, code, opt, normalize, mesh):
    return training.scheduled_step(
        lambda opt: training.learned_step(code, model, opt, loss,
                                          patterns_PN, normalize, mesh,
                                          patterns),
        opt, schedule, warmup_epochs, epochs)

  def arrays(*, task, split, outputs_NC, base_vars):
    del task
    return {"outputs": outputs_NC, "labels": split.label,
            "base_vars": base_vars}

  return Approach(
      name="learned", trains=True, init=init_state, step=step, arrays=arrays,
      parity_network=_base_network, code_params=lambda state: state.params,
      config_fields=("learned.encoder", "learned.decoder_width",
                     "learned.loss", "learned.patterns",
                     "parity.schedule", "parity.warmup_epochs"))


def training_free() -> Approach:
  """Codes whose parities F itself computes, with nothing to train."""
  return Approach(name="none", trains=False, init=None, step=None,
                  arrays=None, parity_network=_base_network,
                  code_params=lambda state: {})


def _base_network(base_vars, state):
  del state
  return base_vars, models.apply_groups


def _check_schedule(schedule, warmup_epochs, epochs):
  training.check_schedule(schedule)
  if schedule == "constant":
    return
  if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
    raise ValueError(f"parity.schedule={schedule!r} needs the stage's epochs "
                     f"(an integer >= 1), got {epochs!r}")
  if (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int)
      or not 0 <= warmup_epochs < epochs):
    raise ValueError(f"parity.warmup_epochs must be an integer in [0, "
                     f"parity.epochs={epochs}), got {warmup_epochs!r}")


def _widened(model, width, dtype) -> models.Model:
  """`model`'s architecture `width` times wider (`models.get`), built for
  the input shape it is given (at init, or of the inputs it is applied to)."""
  build = functools.lru_cache(maxsize=None)(
      lambda shape: models.get(model.name, shape, model.num_outputs, dtype,
                               width))

  def init(key, input_shape=None):
    if input_shape is None:
      raise ValueError("a parity model of width != 1 needs input_shape")
    return build(tuple(input_shape)).init(key)

  def apply(variables, x, train=False):
    return build(tuple(x.shape[1:])).apply(variables, x, train)
  return models.Model(model.name, init, apply, model.num_outputs)


def stage2_option(config, dotted):
  """The stage-2 option `dotted` of `config`, or its default where a config
  saved before the option existed lacks it."""
  value = _stored(config, dotted)
  return _STAGE2_DEFAULTS[dotted] if value is None else value


def _stored(config, dotted):
  """A dotted config field, or None where `config` lacks it."""
  for part in dotted.split("."):
    if part not in config:
      return None
    config = config[part]
  return config

