"""Training steps and epochs: F, parity models and learned codes.

Step builders take everything they use as arguments (model, code, optimiser,
loss, erasure patterns, normalisation, mesh) and return a pure
`step(state, indices, **arrays) -> (state, loss)`; `epoch` turns a step into
one epoch over device-resident arrays, as one `lax.scan` or a loop of jitted
steps (`EpochLoop`). `jaxcc.stages` wires them to a config.

F is frozen in stage 2: its parameters are an argument of the step (or its
outputs are given), never optimiser state.
"""

import enum
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import optax

from jaxcc import data
from jaxcc import losses
from jaxcc import models
from jaxcc import parallel


class TrainState(NamedTuple):
  """What one training stage checkpoints. `batch_stats` is `{}` without BN."""
  params: Any
  batch_stats: Any
  opt_state: Any


class EpochLoop(enum.Enum):
  """How an epoch runs its steps; both run the same steps on the same data.

  SCAN: one jitted `lax.scan` over the epoch (no per-step dispatch; best for
  small dense models and on accelerators). STEPS: a Python loop of jitted
  steps (XLA's CPU backend runs convolutions inside loops about 20x slower
  than outside: a learned conv-encoder step took 0.6 s alone, 11 s inside a
  scan). AUTO: STEPS on the CPU for a step with a convolution, else SCAN.
  """
  AUTO = "auto"
  SCAN = "scan"
  STEPS = "steps"


SCHEDULES = ("constant", "cosine")


def optimizer(learning_rate: float, weight_decay: float,
              schedule: Optional[Callable] = None
              ) -> optax.GradientTransformation:
  """Adam with L2 regularisation added to the gradient (PyTorch semantics);
  `schedule(step) -> factor` multiplies its learning rate (`scheduled`)."""
  opt = optax.chain(optax.add_decayed_weights(weight_decay),
                    optax.adam(learning_rate))
  return opt if schedule is None else scheduled(opt, schedule)


def scheduled(opt, schedule: Callable) -> optax.GradientTransformation:
  """`opt` with its updates multiplied by `schedule(step)`, `step` being the
  `count` of updates in `opt`'s state (Adam's). The state is `opt`'s own, so
  a checkpoint restores with or without the schedule."""

  def update(updates, state, params=None):
    factor = schedule(optax.tree_utils.tree_get(state, "count"))
    updates, state = opt.update(updates, state, params)
    return jax.tree.map(lambda u: (factor * u).astype(u.dtype),
                        updates), state
  return optax.GradientTransformation(opt.init, update)


def check_schedule(name: str) -> None:
  if name not in SCHEDULES:
    raise ValueError(f"parity.schedule must be one of {SCHEDULES}, got "
                     f"{name!r}")


def lr_schedule(name: str, warmup_steps: int,
                total_steps: int) -> Optional[Callable]:
  """The learning-rate factor of schedule `name` (one of `SCHEDULES`):
  None for "constant"; for "cosine" a linear warm-up from 0 to 1 over
  `warmup_steps`, then a cosine decay to 0 at `total_steps`."""
  check_schedule(name)
  if name == "constant":
    return None
  if not 0 <= warmup_steps < total_steps:
    raise ValueError(f"the warm-up ({warmup_steps} steps) must be shorter "
                     f"than the stage ({total_steps} steps)")
  return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps,
                                            total_steps, 0.0)


def scheduled_step(build_step, opt, schedule: str, warmup_epochs: int,
                   epochs: int):
  """`build_step(opt)`, with `opt` following `schedule` over `epochs`.

  The schedule's length in steps needs the steps per epoch:
  `with_epoch_steps(step, steps_per_epoch)` gives them (as `jaxcc.stages`
  does, for either input pipeline). Without them the step reads them at
  trace time as `len(images) // idx.size` (the examples one step takes, as
  in `data.epoch_groups`), which needs the whole training set in each step
  (`epoch`, not a streamed epoch, whose steps see one batch). The optimiser
  state is `opt`'s.
  """
  check_schedule(schedule)
  if schedule == "constant":
    return build_step(opt)

  def for_epoch_steps(steps_per_epoch):
    return build_step(scheduled(opt, lr_schedule(
        schedule, warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)))

  def step(state, idx, images, **arrays):
    if images.shape[0] == idx.size:
      raise ValueError(f"parity.schedule={schedule!r} needs the whole "
                       "training set in each step, or the steps per epoch "
                       "(training.with_epoch_steps)")
    return for_epoch_steps(images.shape[0] // idx.size)(state, idx, images,
                                                        **arrays)
  step.for_epoch_steps = for_epoch_steps
  return step


def with_epoch_steps(step, steps_per_epoch: int):
  """`step` of `scheduled_step` with its schedule spanning epochs of
  `steps_per_epoch` steps, whatever the step's inputs; a step without a
  schedule as it is."""
  fixed = getattr(step, "for_epoch_steps", None)
  return step if fixed is None else fixed(steps_per_epoch)


def normalizer(mean, std) -> Callable:
  """`images -> float32 inputs of F`, standardised by the train statistics."""
  mean, std = np.float32(mean), np.float32(std)
  return lambda images: data.normalize(images, mean, std)


def apply_gradients(opt, state: TrainState, loss_fn):
  """One optimiser update of `state.params` by `loss_fn(params) -> (loss,
  new_batch_stats)`; returns `(state, loss)`."""
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = opt.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates),
                    stats if stats else state.batch_stats, opt_state), loss


# Step builders.


def base_step(model, opt, loss, normalize, mesh=None):
  """`step(state, idx_B, images, labels)`: one minibatch of training F."""

  def step(state, idx_B, images, labels):
    x_B, labels_B = parallel.shard_batch(mesh, normalize(images[idx_B]),
                                         labels[idx_B])

    def loss_fn(params):
      outputs, stats = model.apply(
          models.variables(params, state.batch_stats), x_B, train=True)
      return loss(outputs, labels_B), stats
    return apply_gradients(opt, state, loss_fn)
  return step


def parity_step(model, code, opt, normalize, mesh=None):
  """`step(state, idx_BK, images, targets)`: MSE training of the r parity
  models (stacked on a leading axis, vmapped) toward the parity outputs the
  decoder expects from the per-example `targets`."""

  def step(state, idx_BK, images, targets):
    x_BK, y_BK = parallel.shard_batch(mesh, normalize(images[idx_BK]),
                                      targets[idx_BK])
    parities_BR = code.encode({}, x_BK)
    target_BRC = code.parity_target({}, y_BK)

    def loss_fn(params):
      out_RBC, stats_R = jax.vmap(
          functools.partial(model.apply, train=True), in_axes=(0, 1))(
              models.variables(params, state.batch_stats), parities_BR)
      return losses.mse(jnp.moveaxis(out_RBC, 0, 1), target_BRC), stats_R
    return apply_gradients(opt, state, loss_fn)
  return step


PARITY_LOSSES = {"decoded-mse": losses.mse_base, "decoded-kl": losses.kl_base,
                 "decoded-xent-top1": losses.xent_top1,
                 "decoded-xent-label": losses.xent_label}


def decoded_parity_loss(code, model, loss_name, patterns_PN,
                        temperature: float = 1.0):
  """Mean loss of the decoded reconstructions over every erasure pattern.

  Returns `loss(params, batch_stats, x_BK, outputs_BKC, labels_BK) ->
  (loss, batch_stats_R)`: the r parity models (stacked, vmapped) run on the
  parities, the k data slots hold F's given outputs, and the decoder rebuilds
  the erased slots of each pattern as at test time (one `vmap`). The loss
  (`PARITY_LOSSES`) compares them with F's outputs, or the true labels for
  "decoded-xent-label"; F is a constant, so only the parity models learn.
  """
  if loss_name not in PARITY_LOSSES:
    raise ValueError(f"unknown decoded parity loss {loss_name!r}; known: "
                     f"{sorted(PARITY_LOSSES)}")
  loss_fn = PARITY_LOSSES[loss_name]
  if loss_name == "decoded-kl":
    loss_fn = functools.partial(loss_fn, temperature=temperature)
  k = code.k

  def loss(params, batch_stats, x_BK, outputs_BKC, labels_BK):
    parities_BR = code.encode({}, x_BK)
    out_RBC, stats_R = jax.vmap(
        functools.partial(model.apply, train=True), in_axes=(0, 1))(
            models.variables(params, batch_stats), parities_BR)
    y_BNC = jnp.concatenate([outputs_BKC, jnp.moveaxis(out_RBC, 0, 1)],
                            axis=1)
    target = labels_BK if loss_name == "decoded-xent-label" else outputs_BKC

    def pattern_loss(available_N):
      recon_BKC = code.decode({}, y_BNC, available_N)
      return loss_fn(recon_BKC, target, ~available_N[:k])
    return jnp.mean(jax.vmap(pattern_loss)(jnp.asarray(patterns_PN))), stats_R
  return loss


def decoded_parity_step(model, code, opt, loss_name, patterns_PN, normalize,
                        temperature: float = 1.0, mesh=None):
  """`step(state, idx_BK, images, outputs, labels)`: the r parity models
  trained on `decoded_parity_loss` over `patterns_PN`, F's `outputs` given."""
  loss = decoded_parity_loss(code, model, loss_name, patterns_PN, temperature)

  def step(state, idx_BK, images, outputs, labels):
    batch = parallel.shard_batch(mesh, normalize(images[idx_BK]),
                                 outputs[idx_BK], labels[idx_BK])
    return apply_gradients(
        opt, state, lambda params: loss(params, state.batch_stats, *batch))
  return step


def learned_loss(code, model, loss_name, patterns_PN, patterns="mean"):
  """Loss over every erasure pattern of one minibatch of groups, combined
  by `losses.PATTERN_REDUCTIONS[patterns]` (their mean or the worst).

  Returns `loss(code_params, base_vars, x_BK, outputs_BKC, labels_BK)`. F runs
  once on the parities (the data outputs are given), the decoder once per
  pattern inside a `vmap`; each pattern's loss covers its erased slots only.
  """
  loss_fn = losses.get(loss_name)
  reduce_patterns = losses.pattern_reduction(patterns)
  k = code.k

  def loss(code_params, base_vars, x_BK, outputs_BKC, labels_BK):
    parities_BR = code.encode(code_params, x_BK)
    y_BNC = jnp.concatenate(
        [outputs_BKC, models.apply_groups(model, base_vars, parities_BR)],
        axis=1)
    target = labels_BK if loss_name == "xent-label" else outputs_BKC

    def pattern_loss(available_N):
      recon_BKC = code.decode(code_params, y_BNC, available_N)
      return loss_fn(recon_BKC, target, ~available_N[:k])
    return reduce_patterns(jax.vmap(pattern_loss)(jnp.asarray(patterns_PN)))
  return loss


def learned_step(code, model, opt, loss_name, patterns_PN, normalize,
                 mesh=None, patterns="mean"):
  """`step(state, idx_BK, images, outputs, labels, base_vars)`: the learned
  encoder and decoder, trained through the frozen F over `patterns_PN`."""
  loss = learned_loss(code, model, loss_name, patterns_PN, patterns)

  def step(state, idx_BK, images, outputs, labels, base_vars):
    batch = parallel.shard_batch(mesh, normalize(images[idx_BK]),
                                 outputs[idx_BK], labels[idx_BK])
    return apply_gradients(
        opt, state, lambda params: (loss(params, base_vars, *batch), {}))
  return step


# Epochs.


def batch_indices(batch_size: int):
  """`indices(key, num_examples) -> (steps, batch_size)` plain minibatches."""
  return lambda key, num_examples: data.batches(key, num_examples, batch_size)


def group_indices(k: int, groups_per_batch: int):
  """`indices(key, num_examples) -> (steps, groups_per_batch, k)` fresh
  random coding groups."""
  return lambda key, num_examples: data.epoch_groups(key, num_examples, k,
                                                     groups_per_batch)


def epoch_steps(indices, num_examples: int) -> int:
  """The steps of an epoch of `indices(key, num_examples)`."""
  return jax.eval_shape(lambda key: indices(key, num_examples),
                        jax.random.PRNGKey(0)).shape[0]


def epoch(step, indices, loop: EpochLoop = EpochLoop.AUTO):
  """`epoch(state, key, *, start=0, stop=None, progress=None, images=...,
  **arrays) -> (state, losses_S)`.

  `indices(key, num_examples)` gives the `(steps, batch...)` indices of one
  epoch; `step(state, indices, images, **arrays) -> (state, loss)`. A call
  runs the epoch's steps `start` to `stop` (default: all), so that a stage
  can stop inside an epoch to checkpoint and resume there. The state is
  donated. `loop` picks how the steps run (see `EpochLoop`); AUTO decides at
  the first call from the step's computation. A STEPS loop runs at most two
  steps ahead of the device and calls `progress(steps done in the epoch)`
  (`logs.Progress`) after each; a scanned run is one XLA call, so it can
  report nothing before its end.
  """
  jitted_step = jax.jit(step, donate_argnums=0)
  jitted_indices = jax.jit(indices, static_argnums=1)

  @functools.partial(jax.jit, donate_argnums=0)
  def scanned(state, idx_S, **arrays):
    return jax.lax.scan(functools.partial(step, **arrays), state, idx_S)

  def looped(state, idx_S, progress, start, **arrays):
    state, losses_S = run_ahead(
        lambda state, idx: jitted_step(state, idx, **arrays), state, idx_S,
        progress, start)
    return state, jnp.stack(losses_S)

  chosen = []

  def run(state, key, *, start=0, stop=None, progress=None, **arrays):
    idx_S = jitted_indices(key, arrays["images"].shape[0])
    idx_S = idx_S[epoch_slice(len(idx_S), start, stop)]
    if not chosen:
      chosen.append(resolve_loop(loop, step, indices, state, key, arrays))
    if chosen[0] is EpochLoop.SCAN:
      return scanned(state, idx_S, **arrays)
    return looped(state, idx_S, progress, start, **arrays)
  run.scanned = scanned
  return run


def epoch_slice(steps: int, start: int, stop: Optional[int]) -> slice:
  """Steps `start` to `stop` (None: the end) of an epoch of `steps`."""
  stop = steps if stop is None else stop
  if not 0 <= start < stop <= steps:
    raise ValueError(f"steps {start} to {stop} are not a part of an epoch of "
                     f"{steps} steps")
  return slice(start, stop)


def run_ahead(run_one, state, items, progress=None, done: int = 0):
  """`state, loss = run_one(state, item)` over `items`, at most two items
  ahead of the device; `progress(done + steps finished)` follows each
  finished item (a loss of shape () is one step, of shape (S,) S steps).
  Returns the state and the list of losses."""
  losses = []
  for item in items:
    state, loss = run_one(state, item)
    losses.append(loss)
    if len(losses) > 2:
      done += np.size(losses[-3].block_until_ready())
      if progress is not None:
        progress(done)
  return state, losses


def resolve_loop(loop: EpochLoop, step, indices, state, key,
                 arrays) -> EpochLoop:
  """`loop`, or for AUTO the loop `epoch` runs: SCAN, except STEPS on the
  CPU when `step` computes a convolution."""
  if loop is not EpochLoop.AUTO:
    return loop
  if jax.default_backend() != "cpu":
    return EpochLoop.SCAN
  epoch_idx = jax.eval_shape(functools.partial(
      indices, num_examples=arrays["images"].shape[0]), key)
  idx = jax.ShapeDtypeStruct(epoch_idx.shape[1:], epoch_idx.dtype)
  jaxpr = jax.make_jaxpr(step)(state, idx, **arrays)
  return EpochLoop.STEPS if _has_convolution(jaxpr.jaxpr) else EpochLoop.SCAN


def streamed_epoch(step, index_shape: tuple, loop: EpochLoop):
  """`epoch(state, chunks, *, progress=None, start=0, **constants) ->
  (state, losses_S)` over batches gathered outside the step
  (`jaxcc.pipeline`).

  Each chunk is a dict of `(S, R, ...)` arrays: S steps of R =
  prod(`index_shape`) rows, which the step reads in order through `idx =
  arange(R).reshape(index_shape)`, so `step` is a builder's step unchanged.
  `constants` are the arrays every step reads whole (e.g. `base_vars`).
  `loop` (resolved: SCAN or STEPS) runs a chunk as one `lax.scan` or as
  straight-line steps, for chunks of one step (see `EpochLoop`). The state
  is donated. At most two chunks run ahead of the device (`run_ahead`), and
  `progress(start + steps done)`, if given, follows each; `start` is the
  epoch's step of the first chunk.
  """
  if loop is EpochLoop.AUTO:
    raise ValueError("streamed_epoch needs a resolved loop (resolve_loop)")
  idx = np.arange(np.prod(index_shape), dtype=np.int32).reshape(index_shape)

  @functools.partial(jax.jit, donate_argnums=0)
  def run_chunk(state, chunk, constants):
    if loop is EpochLoop.SCAN:
      return jax.lax.scan(lambda s, batch: step(s, idx, **batch, **constants),
                          state, chunk)
    losses_S = []
    for i in range(len(next(iter(chunk.values())))):
      state, loss = step(state, idx, **{n: a[i] for n, a in chunk.items()},
                         **constants)
      losses_S.append(loss)
    return state, jnp.stack(losses_S)

  def run(state, chunks, *, progress=None, start=0, **constants):
    state, losses = run_ahead(
        lambda state, chunk: run_chunk(state, chunk, constants), state,
        chunks, progress, start)
    if not losses:
      raise ValueError("streamed_epoch got no batches")
    return state, jnp.concatenate(losses)
  return run


def _has_convolution(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      return True
    for sub in jax_core.jaxprs_in_params(eqn.params):
      if _has_convolution(sub):
        return True
  return False


def init_base(model, opt, key) -> TrainState:
  """F's initial parameters, BatchNorm state and optimiser state."""
  v = model.init(key)
  return TrainState(v["params"], v.get("batch_stats", {}),
                    opt.init(v["params"]))
