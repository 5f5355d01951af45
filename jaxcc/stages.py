"""Training a config: stage 1 trains the base model F, stage 2 what makes the
code work (chosen by the config's `approaches.Approach`).

Each stage checkpoints `(state, epoch)` and resumes where it stopped; the
randomness of epoch e depends only on (seed, stage, e), so an interrupted and
resumed run ends exactly where an uninterrupted one does. With
`checkpoint_every_steps` N > 0 a stage also saves every N steps inside an
epoch (`<stage dir>/mid_epoch`: the state, the epoch, the step and the
epoch's losses so far) and resumes from the later of the two checkpoints,
ending bit for bit as a run that was not interrupted; the stage's own
checkpoints stay at epoch ends. Validation metrics come from the same
`metrics.evaluate_split` as the final evaluation.

The training examples reach the steps through the config's `input_pipeline`:
"memory" places the training set on the device once and gathers each batch
there (`training.epoch`); "stream" gathers each batch on the host and
prefetches it (`pipeline.epoch`); "auto" streams
a training set larger than `max_device_bytes`. Both read the same batches in
the same order, so they train to the same state. A learning-rate schedule
spans the stage's steps, counted from the epoch's indices either way.
"""

import functools
import os
import shutil
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import checkpoints
from jaxcc import experiment as experiment_lib
from jaxcc import logs
from jaxcc import metrics
from jaxcc import models
from jaxcc import parallel
from jaxcc import pipeline
from jaxcc import training
from jaxcc import workdir as workdir_lib

_STAGE_SEEDS = {"base": 1, "stage2": 2}
INPUT_PIPELINES = ("memory", "stream", "auto")
_MAX_DEVICE_BYTES = 2 * 1024**3  # configs saved before the field existed
MID_EPOCH_DIR = "mid_epoch"


class _Context(NamedTuple):
  """What both stages of one run share."""
  config: Any
  mesh: Any
  place: Callable  # host pytree -> device (replicated over the mesh)
  normalize: Callable
  loop: training.EpochLoop
  images: Any  # the training images: on the device, or None when streaming
  writer: logs.MetricWriter


def train(config, workdir: str) -> experiment_lib.Experiment:
  """Trains F (unless its workdir has it) and then stage 2; resumable.

  One process at a time per workdir (`workdir.training_lock`).
  """
  requested = config.get("input_pipeline", "auto")
  if requested not in INPUT_PIPELINES:
    raise ValueError(f"input_pipeline must be one of {INPUT_PIPELINES}, got "
                     f"{requested!r}")
  budget = config.get("max_device_bytes", _MAX_DEVICE_BYTES)
  if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
    raise ValueError(f"max_device_bytes must be an integer >= 0, got "
                     f"{budget!r}")
  every = config.get("checkpoint_every_steps", 0)
  if isinstance(every, bool) or not isinstance(every, int) or every < 0:
    raise ValueError(f"checkpoint_every_steps must be an integer >= 0, got "
                     f"{every!r}")
  with workdir_lib.training_lock(workdir):
    return _train(config, workdir, requested, budget)


def _train(config, workdir, requested, budget) -> experiment_lib.Experiment:
  exp = experiment_lib.setup(config, workdir)
  workdir_lib.check_identity(exp.base_dir, workdir_lib.base_identity(config))
  if exp.approach.trains:
    base_epochs = max(config.base.epochs,
                      workdir_lib.trained_epochs(exp.base_dir))
    workdir_lib.check_identity(exp.stage2_dir,
                               workdir_lib.stage2_identity(exp, base_epochs))
  experiment_lib.write_config(config, workdir)
  mesh = parallel.data_mesh() if jax.device_count() > 1 else None
  place = (lambda tree: parallel.replicate(mesh, tree)) if mesh else (
      jax.device_put)
  stream = _streams(requested, budget, exp.dataset.train)
  ctx = _Context(config, mesh, place,
                 training.normalizer(exp.dataset.mean, exp.dataset.std),
                 training.EpochLoop(config.epoch_loop),
                 None if stream else place(np.asarray(
                     exp.dataset.train.image)),  # a SourceArray read whole
                 logs.MetricWriter(workdir))
  try:
    base_state = _train_base(exp, ctx)
    if exp.approach.trains:
      _train_stage2(exp, ctx, base_state)
  finally:
    ctx.writer.close()
  return exp


def _streams(requested, budget, split) -> bool:
  """Whether `input_pipeline=requested` streams the training `split`."""
  size = split.image.nbytes + split.label.nbytes
  stream = requested == "stream" or (requested == "auto" and size > budget)
  logs.info(f"input pipeline: {'stream' if stream else 'memory'} (training "
            f"set {size / 2**20:,.1f} MiB, input_pipeline={requested})")
  return stream


def _epoch_fn(ctx, step, indices, arrays):
  """`epoch_fn(state, key_e)` of a stage through the context's pipeline.

  `arrays` are what the step reads: host arrays with a leading example axis
  (the training `images`, labels, targets) and pytrees it reads whole
  (`base_vars`).
  """
  constants = {n: a for n, a in arrays.items() if not hasattr(a, "shape")}
  arrays = {n: a for n, a in arrays.items() if n not in constants}
  if ctx.images is None:
    return functools.partial(
        pipeline.epoch(step, indices, arrays, ctx.loop, ctx.mesh),
        **ctx.place(constants))
  del arrays["images"]
  return functools.partial(training.epoch(step, indices, ctx.loop),
                           images=ctx.images, **ctx.place(arrays),
                           **ctx.place(constants))


def _train_base(exp, ctx) -> training.TrainState:
  cfg = ctx.config.base
  parallel.check_batch(ctx.mesh, cfg.batch_size, "base.batch_size")
  opt = training.optimizer(cfg.learning_rate, cfg.weight_decay)
  step = training.base_step(exp.model, opt, exp.task.base_loss, ctx.normalize,
                            ctx.mesh)
  key = _key(ctx.config, "base")
  workdir_lib.bind(exp.base_dir, workdir_lib.base_identity(ctx.config))
  if ctx.config.base_checkpoint:
    _import_base(exp, ctx.config, training.init_base(exp.model, opt, key))
  indices = training.batch_indices(cfg.batch_size)
  return run_stage(
      "base", exp.base_dir, cfg.epochs, training.init_base(exp.model, opt, key),
      _epoch_fn(ctx, step, indices,
                {"images": exp.dataset.train.image,
                 "labels": exp.dataset.train.label}),
      lambda state: _base_validation(exp, state), ctx,
      steps_per_epoch=training.epoch_steps(indices,
                                           len(exp.dataset.train.image)),
      examples_per_step=cfg.batch_size, key=key)


def _import_base(exp, config, initial: training.TrainState) -> None:
  """Saves F's variables from `config.base_checkpoint` as the base stage's
  last epoch (unless the stage has a checkpoint), so nothing retrains F."""
  ckpt = checkpoints.Checkpointer(exp.base_dir)
  try:
    if ckpt.latest_step() is not None:
      return
    variables = checkpoints.load_variables(
        config.base_checkpoint,
        models.variables(initial.params, initial.batch_stats))
    state = initial._replace(params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}))
    ckpt.save(config.base.epochs, state, {"epoch": config.base.epochs})
    logs.info(f"[base] F from {config.base_checkpoint}; not trained here")
  finally:
    ckpt.close()


def _train_stage2(exp, ctx, base_state) -> training.TrainState:
  cfg, ds = ctx.config.parity, exp.dataset
  base_vars = models.variables(base_state.params, base_state.batch_stats)
  outputs_NC = models.predict(exp.model, base_vars, ds.train.image, ds.mean,
                              ds.std)
  val_outputs = models.predict(exp.model, base_vars, ds.validation.image,
                               ds.mean, ds.std)
  parallel.check_batch(ctx.mesh, cfg.batch_size, "parity.batch_size")
  opt = training.optimizer(cfg.learning_rate, cfg.weight_decay)
  indices = training.group_indices(exp.code.k, cfg.batch_size)
  steps_per_epoch = training.epoch_steps(indices, len(ds.train.image))
  step = training.with_epoch_steps(
      exp.approach.step(model=exp.model, code=exp.code, opt=opt,
                        normalize=ctx.normalize, mesh=ctx.mesh),
      steps_per_epoch)
  arrays = exp.approach.arrays(task=exp.task, split=ds.train,
                               outputs_NC=outputs_NC, base_vars=base_vars)
  key = _key(ctx.config, "stage2")
  workdir_lib.bind(exp.stage2_dir, workdir_lib.stage2_identity(
      exp, workdir_lib.trained_epochs(exp.base_dir)))
  state = exp.approach.init(key, model=exp.model, code=exp.code, opt=opt,
                            input_shape=ds.input_shape, base_state=base_state)
  return run_stage(
      "stage2", exp.stage2_dir, cfg.epochs, state,
      _epoch_fn(ctx, step, indices, {"images": ds.train.image, **arrays}),
      lambda s: _coded_validation(exp, base_state, s, val_outputs), ctx,
      steps_per_epoch=steps_per_epoch, examples_per_step=cfg.batch_size,
      key=key)


def run_stage(stage, directory, epochs, state, epoch_fn, validate, ctx, *,
              steps_per_epoch, examples_per_step, key) -> training.TrainState:
  """Runs `epoch_fn` from the last checkpoint in `directory` to `epochs`.

  `epoch_fn(state, key_e, start=, stop=, progress=) -> (state, losses_S)`
  runs steps `start` to `stop` of epoch e (`training.epoch`); the config's
  `checkpoint_every_steps` splits an epoch into such parts, each but the
  last followed by a mid-epoch checkpoint (see the module docstring).
  """
  every = ctx.config.get("checkpoint_every_steps", 0) or steps_per_epoch
  ckpt = checkpoints.Checkpointer(directory)
  mid = (checkpoints.Checkpointer(os.path.join(directory, MID_EPOCH_DIR))
         if every < steps_per_epoch else None)
  try:
    start = 0
    if ckpt.latest_step() is not None:
      state, meta = ckpt.restore(state, fallback=True)
      start = meta["epoch"]
    resumed = _restore_mid_epoch(mid, state, start, steps_per_epoch)
    if resumed:
      start, first, state, done_S = resumed
      logs.info(f"[{stage}] resuming from epoch {start}, step {first} "
                f"({directory})")
    else:
      first, done_S = 0, np.zeros(0, np.float32)
      if start:
        logs.info(f"[{stage}] resuming from epoch {start} ({directory})")
    ctx.writer.resume(stage, start)
    state = ctx.place(state)
    last_save = stage_began = time.monotonic()
    trained = 0
    for e in range(start, epochs):
      began = time.perf_counter()
      key_e = jax.random.fold_in(key, e)
      progress = logs.Progress(steps_per_epoch, examples_per_step, first)
      losses, s = [jnp.asarray(done_S)], first
      while s < steps_per_epoch:
        stop = min((s // every + 1) * every, steps_per_epoch)
        state, loss_S = epoch_fn(state, key_e, start=s, stop=stop,
                                 progress=progress)
        losses.append(loss_S.astype(jnp.float32))
        s = stop
        if s < steps_per_epoch:
          _save_mid_epoch(mid, e, s, state, jnp.concatenate(losses),
                          steps_per_epoch)
          progress(s)  # a scanned part reports only here
      loss = float(jnp.mean(jnp.concatenate(losses)))
      seconds = time.perf_counter() - began
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"[{stage}] loss became {loss} in epoch {e + 1}; lower the "
            "learning rate or check the inputs")
      examples = (steps_per_epoch - first) * examples_per_step
      trained += examples
      first, done_S = 0, np.zeros(0, np.float32)
      record = {"stage": stage, "epoch": e + 1, "loss": loss,
                "seconds": seconds, "examples_per_sec": examples / seconds}
      done = e + 1 == epochs
      if done or (e + 1) % ctx.config.eval_every == 0:
        record.update(validate(state))
      since_save = time.monotonic() - last_save
      if done or since_save >= ctx.config.checkpoint_every_secs:
        ckpt.save(e + 1, state, {"epoch": e + 1})
        last_save = time.monotonic()
      ctx.writer.write(record)
      logs.info(_format_record(record, epochs))
    if epochs > start:
      seconds = time.monotonic() - stage_began
      ctx.writer.write({"stage": stage, "summary": True,
                        "epochs": epochs - start, "seconds": seconds,
                        "examples_per_sec": trained / seconds})
  finally:  # Async saves finish even when training raised.
    ckpt.close()
    if mid is not None:
      mid.close()
  if mid is not None and jax.process_index() == 0:
    shutil.rmtree(mid.directory, ignore_errors=True)  # The stage is saved.
  return state


def _save_mid_epoch(mid, epoch, step, state, losses_S, steps_per_epoch):
  """Checkpoint `epoch * steps_per_epoch + step`: the state after `step`
  steps of epoch `epoch` (0-based) and their losses (zero-padded)."""
  padded = jnp.zeros(steps_per_epoch, jnp.float32).at[:step].set(losses_S)
  mid.save(epoch * steps_per_epoch + step, {"state": state, "losses": padded},
           {"epoch": epoch, "step": step})


def _restore_mid_epoch(mid, state, start, steps_per_epoch):
  """`(epoch, step, state, losses_S)` of the latest mid-epoch checkpoint
  after epoch `start` ends, or None."""
  if mid is None or (mid.latest_step() or 0) <= start * steps_per_epoch:
    return None
  saved, meta = mid.restore(
      {"state": state, "losses": np.zeros(steps_per_epoch, np.float32)},
      fallback=True)
  if meta["epoch"] < start:
    return None
  return (meta["epoch"], meta["step"], saved["state"],
          saved["losses"][:meta["step"]])


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
  outputs = models.predict(
      exp.model, models.variables(state.params, state.batch_stats),
      split.image, exp.dataset.mean, exp.dataset.std)
  primary = exp.task.primary
  return {f"val_{primary}": float(np.mean(
      exp.task.score(outputs, split.label)[primary]))}


def _coded_validation(exp, base_state, state, val_outputs):
  results = metrics.evaluate_split(exp, base_state, state,
                                   exp.dataset.validation, seed=0,
                                   outputs_NC=val_outputs)
  key = f"degraded_{exp.task.primary}"
  return {f"val_{key}": results[key]}
