"""Training: stage 1 trains the base model F, stage 2 what makes the code work.

F is trained with cross-entropy on class labels, or with MSE on the 4 box
coordinates for localisation. Stage 2 is either parity models (trained with
MSE toward the parity outputs the decoder expects, e.g. `sum_i F(X_i)`, class
scores and boxes alike) or a learned encoder and decoder
(trained through the frozen F over every erasure pattern at once). Codes that
need no training (Berrut) skip it.

Every epoch is one jitted call: the epoch's data lives on the device and a
`lax.scan` runs its minibatches, so there is no per-step host round trip.
F is frozen in stage 2, so its outputs on the training set are computed once
and reused; its parameters are an argument of the step, never optimiser state.
Each stage checkpoints `(state, epoch)` and resumes where it stopped; the
randomness of epoch e depends only on (seed, stage, e), so an interrupted and
resumed run ends exactly where an uninterrupted one does.
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcc import checkpoints
from jaxcc import data
from jaxcc import erasures
from jaxcc import evaluation
from jaxcc import experiment as experiment_lib
from jaxcc import localization
from jaxcc import losses
from jaxcc import parallel
from jaxcc.experiment import TrainState

_STAGE_SEEDS = {"base": 1, "stage2": 2}


def train(config, workdir: str) -> experiment_lib.Experiment:
  """Trains F (unless its workdir has it) and then stage 2; resumable."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
  exp = experiment_lib.setup(config, workdir)
  ds = exp.dataset
  mesh = parallel.data_mesh() if jax.device_count() > 1 else None
  place = (lambda tree: parallel.replicate(mesh, tree)) if mesh else (
      jax.device_put)
  images = place(ds.train.image)
  base_state = _run_stage(
      exp, "base", exp.base_dir, config.base,
      experiment_lib.init_base(exp, _key(config, "base")),
      functools.partial(base_epoch(exp, mesh), images=images,
                        labels=place(ds.train.label)),
      lambda state: _base_validation(exp, state),
      examples_per_step=config.base.batch_size, workdir=workdir, place=place)
  if exp.approach == "none":
    return exp
  base_vars = experiment_lib.variables(base_state.params,
                                       base_state.batch_stats)
  outputs_NC = evaluation.predict(exp.model, base_vars, ds.train.image,
                                  ds.mean, ds.std)
  val_outputs = evaluation.predict(exp.model, base_vars, ds.validation.image,
                                   ds.mean, ds.std)
  if exp.approach == "parity-model":
    if config.parity.target == "base":
      targets = outputs_NC
    elif ds.task == data.LOCALIZATION:
      targets = ds.train.label  # the true boxes
    else:
      targets = np.eye(ds.num_classes, dtype=np.float32)[ds.train.label]
    epoch_fn = functools.partial(parity_epoch(exp, mesh), images=images,
                                 targets=place(targets))
  else:
    epoch_fn = functools.partial(
        learned_epoch(exp, mesh), images=images, outputs=place(outputs_NC),
        labels=place(ds.train.label), base_vars=place(base_vars))
  _run_stage(
      exp, "stage2", exp.stage2_dir, config.parity,
      experiment_lib.init_stage2(exp, _key(config, "stage2"), base_state),
      epoch_fn,
      lambda state: _coded_validation(exp, base_state, state, val_outputs),
      examples_per_step=config.parity.batch_size, workdir=workdir,
      place=place)
  return exp


def _run_stage(exp, stage, directory, stage_config, state, epoch_fn,
               validate, examples_per_step, workdir, place):
  """Runs epochs from the last checkpoint to `stage_config.epochs`."""
  cfg = exp.config
  ckpt = checkpoints.Checkpointer(directory)
  start = 0
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    start = meta["epoch"]
    experiment_lib.log(f"[{stage}] resuming from epoch {start} ({directory})")
  state = place(state)
  epochs = stage_config.epochs
  key = _key(cfg, stage)
  last_save = stage_began = time.monotonic()
  for epoch in range(start, epochs):
    began = time.perf_counter()
    state, loss_S = epoch_fn(state, jax.random.fold_in(key, epoch))
    loss = float(jnp.mean(loss_S))
    seconds = time.perf_counter() - began
    if not np.isfinite(loss):
      raise FloatingPointError(
          f"[{stage}] loss became {loss} in epoch {epoch + 1}; lower the "
          "learning rate or check the inputs for NaN")
    record = {"stage": stage, "epoch": epoch + 1, "loss": loss,
              "seconds": seconds,
              "examples_per_sec": loss_S.shape[0] * examples_per_step / seconds}
    done = epoch + 1 == epochs
    if done or (epoch + 1) % cfg.eval_every == 0:
      record.update(validate(state))
    if done or time.monotonic() - last_save >= cfg.checkpoint_every_secs:
      ckpt.save(epoch + 1, state, {"epoch": epoch + 1})
      last_save = time.monotonic()
    experiment_lib.append_metrics(workdir, record)
    experiment_lib.log(_format_record(record, epochs))
  if epochs > start:
    seconds = time.monotonic() - stage_began
    trained = (epochs - start) * record["examples_per_sec"] * record["seconds"]
    experiment_lib.append_metrics(workdir, {
        "stage": stage, "summary": True, "epochs": epochs - start,
        "seconds": seconds, "examples_per_sec": trained / seconds})
  ckpt.close()
  return state


def _format_record(record, epochs):
  extras = " ".join(f"{k}={v:.4f}" for k, v in record.items()
                    if k.startswith("val_"))
  return (f"[{record['stage']}] epoch {record['epoch']}/{epochs} "
          f"loss={record['loss']:.5f} {extras} "
          f"({record['examples_per_sec']:,.0f}/s)")


def _key(config, stage):
  return jax.random.fold_in(jax.random.PRNGKey(config.seed),
                            _STAGE_SEEDS[stage])


def _base_validation(exp, state):
  split = exp.dataset.validation
  outputs = evaluation.predict(
      exp.model, experiment_lib.variables(state.params, state.batch_stats),
      split.image, exp.dataset.mean, exp.dataset.std)
  if exp.dataset.task == data.LOCALIZATION:
    return {"val_mean_iou": float(localization.iou(
        localization.clip_to_image(outputs), split.label).mean())}
  return {"val_accuracy": float((outputs.argmax(-1) == split.label).mean())}


def _coded_validation(exp, base_state, state, val_outputs):
  metrics = evaluation.evaluate_split(
      exp, base_state, state, exp.dataset.validation, seed=0,
      outputs_NC=val_outputs)
  key = ("degraded_mean_iou" if exp.dataset.task == data.LOCALIZATION else
         "degraded_accuracy")
  return {f"val_{key}": metrics[key]}


def _normalizer(exp):
  mean, std = np.float32(exp.dataset.mean), np.float32(exp.dataset.std)
  return lambda images: data.normalize(images, mean, std)


def base_loss(task):
  """F's loss: cross-entropy on class labels, MSE on box coordinates."""
  if task == data.LOCALIZATION:
    return losses.mse
  return lambda logits, labels: (
      optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())


def base_epoch(exp, mesh=None):
  """One epoch of training F (data-parallel over `mesh`)."""
  model, cfg = exp.model, exp.config.base
  opt, normalize = experiment_lib.optimizer(cfg), _normalizer(exp)
  loss = base_loss(exp.dataset.task)
  parallel.check_batch(mesh, cfg.batch_size, "base.batch_size")

  def step(state, idx_B, images, labels):
    x_B, labels_B = parallel.shard_batch(mesh, normalize(images[idx_B]),
                                         labels[idx_B])

    def loss_fn(params):
      outputs, stats = model.apply(
          experiment_lib.variables(params, state.batch_stats), x_B,
          train=True)
      return loss(outputs, labels_B), stats
    return _apply_gradients(opt, state, loss_fn)
  return _epoch(step, lambda key, n: data.batches(key, n, cfg.batch_size),
                scan_epochs(exp))


def parity_epoch(exp, mesh=None):
  """One epoch of MSE training of the r parity models (stacked, vmapped)."""
  model, code, cfg = exp.model, exp.code, exp.config.parity
  opt, normalize = experiment_lib.optimizer(cfg), _normalizer(exp)
  parallel.check_batch(mesh, cfg.batch_size, "parity.batch_size")

  def step(state, idx_BK, images, targets):
    x_BK, y_BK = parallel.shard_batch(mesh, normalize(images[idx_BK]),
                                      targets[idx_BK])
    parities_BR = code.encode({}, x_BK)
    target_BRC = code.parity_target({}, y_BK)

    def loss_fn(params):
      out_RBC, stats_R = jax.vmap(
          functools.partial(model.apply, train=True), in_axes=(0, 1))(
              experiment_lib.variables(params, state.batch_stats),
              parities_BR)
      loss = losses.mse(jnp.moveaxis(out_RBC, 0, 1), target_BRC)
      return loss, stats_R
    return _apply_gradients(opt, state, loss_fn)
  return _epoch(step, lambda key, n: data.epoch_groups(
      key, n, exp.config.k, cfg.batch_size), scan_epochs(exp))


def learned_loss(code, model, loss_name, patterns_PN):
  """Mean loss over every erasure pattern of one minibatch of groups.

  Returns `loss(code_params, base_vars, x_BK, outputs_BKC, labels_BK)`. F runs
  once on the parities (the data outputs are given), the decoder once per
  pattern inside a `vmap`; each pattern's loss covers its erased slots only.
  """
  loss_fn = losses.get(loss_name)
  k = code.k

  def loss(code_params, base_vars, x_BK, outputs_BKC, labels_BK):
    parities_BR = code.encode(code_params, x_BK)
    y_BNC = jnp.concatenate(
        [outputs_BKC, evaluation.base_apply_groups(model, base_vars,
                                                   parities_BR)], axis=1)
    target = labels_BK if loss_name == "xent-label" else outputs_BKC

    def pattern_loss(available_N):
      recon_BKC = code.decode(code_params, y_BNC, available_N)
      return loss_fn(recon_BKC, target, ~available_N[:k])
    return jnp.mean(jax.vmap(pattern_loss)(jnp.asarray(patterns_PN)))
  return loss


def learned_epoch(exp, mesh=None):
  """One epoch of training the learned encoder and decoder through F."""
  cfg = exp.config
  opt, normalize = experiment_lib.optimizer(cfg.parity), _normalizer(exp)
  parallel.check_batch(mesh, cfg.parity.batch_size, "parity.batch_size")
  loss = learned_loss(exp.code, exp.model, cfg.learned.loss,
                      erasures.patterns(cfg.k, cfg.r))

  def step(state, idx_BK, images, outputs, labels, base_vars):
    batch = parallel.shard_batch(mesh, normalize(images[idx_BK]),
                                 outputs[idx_BK], labels[idx_BK])

    def loss_fn(params):
      return loss(params, base_vars, *batch), {}
    return _apply_gradients(opt, state, loss_fn)
  return _epoch(step, lambda key, n: data.epoch_groups(
      key, n, cfg.k, cfg.parity.batch_size), scan_epochs(exp))


def scan_epochs(exp) -> bool:
  """Whether epochs run as one `lax.scan` (True) or a loop of jitted steps.

  A scan saves a dispatch per step, which matters for small dense models.
  XLA's CPU backend runs convolutions inside loops about 20x slower than
  outside (measured: a learned conv-encoder step, 0.6 s alone, 11 s inside a
  scan), so on CPU models or codes with convolutions loop instead.
  """
  choice = str(exp.config.get("scan_epochs", "auto")).lower()
  if choice not in ("auto", "true", "false"):
    raise ValueError(f"scan_epochs must be auto, true or false, got {choice!r}")
  if choice != "auto":
    return choice == "true"
  convolutional = exp.model.name != "mlp" or (
      exp.approach == "learned" and exp.config.learned.encoder == "conv")
  return jax.default_backend() != "cpu" or not convolutional


def _epoch(step, epoch_indices, scan):
  """`epoch(state, key, images=..., **data) -> (state, losses)`.

  `epoch_indices(key, num_examples)` gives the `(steps, batch...)` indices of
  one epoch; `step(state, indices, **data) -> (state, loss)`. Both ways run
  the same steps on the same indices.
  """
  if scan:
    @functools.partial(jax.jit, donate_argnums=0)
    def scanned(state, key, **arrays):
      return jax.lax.scan(functools.partial(step, **arrays), state,
                          epoch_indices(key, arrays["images"].shape[0]))
    return scanned
  jitted_step = jax.jit(step, donate_argnums=0)
  jitted_indices = jax.jit(epoch_indices, static_argnums=1)

  def looped(state, key, **arrays):
    losses = []
    for indices in jitted_indices(key, arrays["images"].shape[0]):
      state, loss = jitted_step(state, indices, **arrays)
      losses.append(loss)
    return state, jnp.stack(losses)
  return looped


def _apply_gradients(opt, state, loss_fn):
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = opt.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates),
                    stats if stats else state.batch_stats, opt_state), loss
