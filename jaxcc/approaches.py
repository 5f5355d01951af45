"""Stage-2 approaches: what makes a code work for a non-linear F.

An `Approach` is chosen once from the config (`from_config`) and carries every
place where the approaches differ:

- parity models (paper §V): r networks F_P, stacked on a leading axis, trained
  with MSE toward the parity outputs the decoder expects (from F's outputs or
  from the true labels); they compute the parity outputs.
- a learned code (paper §IV): encoder and decoder trained through the frozen
  F over every erasure pattern; F computes the parity outputs.
- none: training-free codes (Berrut); F computes the parity outputs.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxcc import erasures
from jaxcc import losses
from jaxcc import models
from jaxcc import training

PARITY_TARGETS = ("base", "label")
PARITY_INITS = ("scratch", "base")


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
  if config.code == "learned":
    return learned_code(config.learned.loss, erasures.patterns(config.k,
                                                               config.r))
  if config.code in ("summation", "linear", "concatenation"):
    return parity_models(config.parity.target, config.parity.init)
  return training_free()


def parity_models(target: str = "base", init: str = "scratch") -> Approach:
  """Parity models trained toward F's outputs ("base") or the true labels
  ("label"), initialised at random ("scratch") or from F ("base")."""
  if target not in PARITY_TARGETS:
    raise ValueError(f"parity.target must be one of {PARITY_TARGETS}, got "
                     f"{target!r}")
  if init not in PARITY_INITS:
    raise ValueError(f"parity.init must be one of {PARITY_INITS}, got "
                     f"{init!r}")

  def init_state(key, *, model, code, opt, input_shape, base_state):
    del input_shape
    if init == "base":
      stacked = jax.tree.map(lambda a: jnp.stack([a] * code.r),
                             (base_state.params, base_state.batch_stats))
    else:
      vs = jax.vmap(model.init)(jax.random.split(key, code.r))
      stacked = (vs["params"], vs.get("batch_stats", {}))
    return training.TrainState(stacked[0], stacked[1], opt.init(stacked[0]))

  def step(*, model, code, opt, normalize, mesh):
    return training.parity_step(model, code, opt, normalize, mesh)

  def arrays(*, task, split, outputs_NC, base_vars):
    del base_vars
    targets = outputs_NC if target == "base" else task.label_targets(
        split.label)
    return {"targets": targets}

  return Approach(
      name="parity-model", trains=True, init=init_state, step=step,
      arrays=arrays,
      parity_network=lambda base_vars, state: (
          models.variables(state.params, state.batch_stats),
          models.stacked_apply),
      code_params=lambda state: {},
      config_fields=("parity.target", "parity.init"))


def learned_code(loss: str, patterns_PN) -> Approach:
  """A learned encoder and decoder trained with `loss` over `patterns_PN`."""
  losses.get(loss)

  def init_state(key, *, model, code, opt, input_shape, base_state):
    del base_state
    params = code.init(key, input_shape, (model.num_outputs,))
    return training.TrainState(params, {}, opt.init(params))

  def step(*, model, code, opt, normalize, mesh):
    return training.learned_step(code, model, opt, loss, patterns_PN,
                                 normalize, mesh)

  def arrays(*, task, split, outputs_NC, base_vars):
    del task
    return {"outputs": outputs_NC, "labels": split.label,
            "base_vars": base_vars}

  return Approach(
      name="learned", trains=True, init=init_state, step=step, arrays=arrays,
      parity_network=_base_network, code_params=lambda state: state.params,
      config_fields=("learned.encoder", "learned.loss"))


def training_free() -> Approach:
  """Codes whose parities F itself computes, with nothing to train."""
  return Approach(name="none", trains=False, init=None, step=None,
                  arrays=None, parity_network=_base_network,
                  code_params=lambda state: {})


def _base_network(base_vars, state):
  del state
  return base_vars, models.apply_groups

