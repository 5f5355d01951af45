"""Protect your own Flax model: fit parity models or a learned code, evaluate.

For any `flax.linen.Module` F with trained `variables` ("params" and, with
BatchNorm, "batch_stats"):

  code = jaxcc.codes.summation(2)
  parity_vars = jaxcc.fit_parity_models(model, variables, images, code,
                                        key=key)
  results = jaxcc.evaluate_coded(model, variables, code, test_images,
                                 test_labels, key=key,
                                 parity_variables=parity_vars)

`images` are raw inputs `(N, ...)`. `preprocess(images) -> inputs of F` is
applied once to the whole array on the host (so it may be NumPy code); the
default casts to float32. F is frozen: it runs with `train=False` when its
`__call__` takes a `train` argument. Parity models run with `train=True`
while training and keep their own BatchNorm statistics.

Parity variables are one flax variables dict (`{"params": ...}` and, with
BatchNorm, `"batch_stats"`) whose every leaf has a leading axis of size r:
parity model j's variables are `jax.tree.map(lambda a: a[j], parity_vars)`.

Training reuses `jaxcc.approaches` and `jaxcc.training` (steps, coding
groups, epochs) and evaluation is `jaxcc.metrics.evaluate_split`, the code
path of `eval.json`. Progress goes to an optional `callback(record)` and, at
absl's INFO level, to one log line per epoch.
"""

import functools
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import approaches
from jaxcc import checkpoints
from jaxcc import data
from jaxcc import erasures
from jaxcc import experiment
from jaxcc import logs
from jaxcc import metrics
from jaxcc import models
from jaxcc import tasks
from jaxcc import training

# Inputs arrive preprocessed: the metrics' normalisation is the identity.
_MEAN, _STD = np.zeros(1, np.float32), np.ones(1, np.float32)
_COLLECTIONS = ("params", "batch_stats")


class _Config(NamedTuple):
  """The config fields that `metrics.evaluate_split` reads: the code is
  given, so no spline lambdas are searched."""
  code: Optional[str] = None


_NO_CONFIG = _Config()


def fit_parity_models(model, variables, images, code, *, key,
                      epochs: int = 10, batch_size: int = 64,
                      learning_rate: float = 1e-3,
                      weight_decay: float = 1e-5,
                      preprocess: Optional[Callable] = None,
                      parity_model=None, init_from_base: bool = False,
                      checkpoint_dir: Optional[str] = None,
                      callback: Optional[Callable[[dict], Any]] = None,
                      progress: bool = True) -> dict:
  """Trains the r parity models of `code` for the frozen F.

  Args:
    model: F, a `flax.linen.Module`.
    variables: F's trained variables.
    images: raw training inputs `(N, ...)`, NumPy or JAX.
    code: a code with parity models (`code.parity_target`): summation,
      linear, concatenation.
    key: a `jax.random` key (initialisation and coding groups).
    epochs: passes over `images`, each in fresh random coding groups.
    batch_size: coding groups (of k examples) per step.
    learning_rate: Adam's learning rate.
    weight_decay: L2 regularisation added to the gradient.
    preprocess: `images -> inputs of F` (default: cast to float32).
    parity_model: the parity models' module (default: F's).
    init_from_base: start the parity models from F's variables (needs F's
      architecture) instead of a random initialisation.
    checkpoint_dir: save every epoch there, and resume from the last saved
      epoch; a resumed run ends as an uninterrupted one does.
    callback: called after every epoch with `{"epoch", "loss",
      "examples_per_sec", "seconds"}`.
    progress: log one line per epoch (absl INFO), and progress lines
      inside epochs longer than `logs.PROGRESS_SECS` (when it runs its steps
      one by one: models with convolutions on the CPU).

  Returns:
    The parity models' variables, stacked over r (see the module docstring).
  """
  _check_code(code)
  if code.parity_target is None:
    raise ValueError(f"{code.name} has no parity models; use "
                     "fit_learned_code for a learned code (training-free "
                     "codes need no fitting)")
  x_N = _inputs(images, preprocess, code.k)
  _check_schedule(len(x_N), code.k, epochs, batch_size)
  base, base_vars = _base(model, variables, x_N.shape[1:])
  parity = _parity(parity_model, base, x_N.shape[1:])
  if init_from_base and (jax.tree.structure(jax.eval_shape(
      parity.init, jax.random.PRNGKey(0))) != jax.tree.structure(base_vars)):
    raise ValueError("init_from_base needs parity models with F's variables;"
                     " parity_model has different ones")
  approach = approaches.parity_models(
      "base", "base" if init_from_base else "scratch")
  opt = training.optimizer(learning_rate, weight_decay)
  init_key, epoch_key = jax.random.split(key)
  state = approach.init(
      init_key, model=parity, code=code, opt=opt, input_shape=x_N.shape[1:],
      base_state=training.TrainState(base_vars["params"],
                                     base_vars.get("batch_stats", {}), None))
  outputs_NC = models.predict(base, base_vars, x_N, _MEAN, _STD)
  state = _fit(
      "parity models",
      approach.step(model=parity, code=code, opt=opt, normalize=_identity,
                    mesh=None),
      state, x_N,
      approach.arrays(task=None, split=None, outputs_NC=outputs_NC,
                      base_vars=base_vars),
      key=epoch_key, code=code, epochs=epochs, batch_size=batch_size,
      checkpoint_dir=checkpoint_dir, callback=callback, progress=progress)
  return models.variables(state.params, state.batch_stats)


def fit_learned_code(model, variables, images, code, *, key,
                     epochs: int = 10, batch_size: int = 64,
                     learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                     loss: str = "mse-base", patterns: str = "mean",
                     labels=None, missing=None,
                     preprocess: Optional[Callable] = None,
                     checkpoint_dir: Optional[str] = None,
                     callback: Optional[Callable[[dict], Any]] = None,
                     progress: bool = True):
  """Trains the encoder and decoder of a learned `code` through the frozen F.

  Arguments as `fit_parity_models`, and:
    code: a code with trained parameters (`jaxcc.codes.learned(...)`).
    loss: a `jaxcc.losses` name; "xent-label" needs `labels`.
    patterns: how the erasure patterns' losses combine: "mean" or "worst"
      (`jaxcc.losses.PATTERN_REDUCTIONS`).
    labels: `(N,)` class labels of `images`.
    missing: erasures per training pattern (default r; see
      `jaxcc.erasures.patterns`).

  Returns:
    The code's parameters, for `code.encode` / `code.decode`.
  """
  _check_code(code)
  if loss == "xent-label" and labels is None:
    raise ValueError("loss='xent-label' needs the labels of the images")
  x_N = _inputs(images, preprocess, code.k)
  _check_schedule(len(x_N), code.k, epochs, batch_size)
  labels_N = (np.zeros(len(x_N), np.int32) if labels is None else
              _labels(labels, len(x_N)))
  base, base_vars = _base(model, variables, x_N.shape[1:])
  if code.parity_target is not None or not _has_params(
      code, x_N.shape[1:], base.num_outputs):
    raise ValueError(f"{code.name} has no trained encoder and decoder; use "
                     "fit_parity_models for parity-model codes")
  approach = approaches.learned_code(
      loss, erasures.patterns(code.k, code.r, missing), patterns=patterns)
  opt = training.optimizer(learning_rate, weight_decay)
  init_key, epoch_key = jax.random.split(key)
  state = approach.init(init_key, model=base, code=code, opt=opt,
                        input_shape=x_N.shape[1:], base_state=None)
  outputs_NC = models.predict(base, base_vars, x_N, _MEAN, _STD)
  state = _fit(
      "learned code",
      approach.step(model=base, code=code, opt=opt, normalize=_identity,
                    mesh=None),
      state, x_N,
      approach.arrays(task=None, split=data.Split(x_N, labels_N),
                      outputs_NC=outputs_NC, base_vars=base_vars),
      key=epoch_key, code=code, epochs=epochs, batch_size=batch_size,
      checkpoint_dir=checkpoint_dir, callback=callback, progress=progress)
  return state.params


def evaluate_coded(model, variables, code, images, labels, *, key,
                   parity_variables=None, code_params=None,
                   parity_model=None, preprocess: Optional[Callable] = None,
                   missing=None) -> dict:
  """The metrics of `eval.json` for F protected by `code` (classification).

  The examples are placed at random (drawn from `key`) into coding groups of
  k; every erasure pattern with `missing` (default r) unavailable outputs is
  decoded. Fields: `available_accuracy` (A_a), `degraded_accuracy` (A_d),
  `reconstruction_accuracy`, `default_accuracy`, `overall_accuracy` (A_o(f)
  by f), the top-5 ones, `per_pattern`, ... (see `jaxcc.metrics`), and k, r,
  code, approach, task, model (F's class name) and dataset (None).

  Args:
    model, variables, preprocess: F and its inputs, as for
      `fit_parity_models`.
    code: the code; a parity-model code needs `parity_variables` (and
      `parity_model` when not F's architecture), a learned one
      `code_params`.
    images: raw inputs `(N, ...)`.
    labels: `(N,)` integer class labels.
    key: a `jax.random` key.
  """
  _check_code(code)
  x_N = _inputs(images, preprocess, code.k)
  labels_N = _labels(labels, len(x_N))
  base, base_vars = _base(model, variables, x_N.shape[1:])
  if labels_N.max() >= base.num_outputs:
    raise ValueError(f"label {labels_N.max()} is not a class of F's "
                     f"{base.num_outputs} outputs")
  if code.parity_target is not None:
    if parity_variables is None:
      raise ValueError(f"{code.name} needs parity_variables (from "
                       "fit_parity_models)")
    parity = _parity(parity_model, base, x_N.shape[1:])
    _check_stacked(parity, parity_variables, code.r, x_N.shape[1:])
    approach = approaches.parity_models()
    if parity is not base:  # metrics call apply(F's model, ...).
      approach = approach._replace(parity_network=lambda _, state: (
          models.variables(state.params, state.batch_stats),
          lambda model, v, parities_BR: models.stacked_apply(parity, v,
                                                             parities_BR)))
    stage2 = training.TrainState(parity_variables["params"],
                                 parity_variables.get("batch_stats", {}),
                                 None)
  elif _has_params(code, x_N.shape[1:], base.num_outputs):
    if code_params is None:
      raise ValueError(f"{code.name} needs code_params (from "
                       "fit_learned_code)")
    approach = approaches.learned_code("mse-base",
                                       erasures.patterns(code.k, code.r))
    stage2 = training.TrainState(code_params, {}, None)
  else:
    approach, stage2 = approaches.training_free(), None
  split = data.Split(x_N, labels_N)
  task = tasks.classification(base.num_outputs)
  exp = experiment.Experiment(
      config=_NO_CONFIG, task=task, model=base, code=code, approach=approach,
      dataset=data.Dataset("arrays", split, split, split, base.num_outputs,
                           _MEAN, _STD),
      base_dir="", stage2_dir="")
  seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
  results = metrics.evaluate_split(
      exp, training.TrainState(base_vars["params"],
                               base_vars.get("batch_stats", {}), None),
      stage2, split, seed=seed, missing=missing)
  results.update(k=code.k, r=code.r, dataset=None, model=base.name,
                 code=code.name, approach=approach.name, task=task.name)
  return results


# Checks of the arguments.


def _check_code(code) -> None:
  if code.k < 1 or code.r < 1:
    raise ValueError(f"a code needs k >= 1 and r >= 1; {code.name} has "
                     f"k={code.k}, r={code.r}")


def _inputs(images, preprocess, k) -> np.ndarray:
  """The float32 inputs of F, checked: at least k examples, all finite."""
  if np.ndim(images) < 2:
    raise ValueError(f"images must be an array (N, ...) of N examples; got "
                     f"shape {np.shape(images)}")
  if len(images) < k:
    raise ValueError(f"{len(images)} examples cannot form one coding group "
                     f"of k={k}")
  x_N = np.asarray(images if preprocess is None else preprocess(images),
                   np.float32)
  if x_N.shape[:1] != (len(images),):
    raise ValueError(f"preprocess turned {len(images)} examples into an "
                     f"array shaped {x_N.shape}")
  if not np.isfinite(x_N).all():
    raise ValueError("images contain NaN or infinite values (after "
                     "preprocess)")
  return x_N


def _check_schedule(num_examples, k, epochs, batch_size) -> None:
  for name, value in (("epochs", epochs), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  if num_examples < k * batch_size:
    raise ValueError(f"{num_examples} examples cannot fill one step of "
                     f"batch_size={batch_size} coding groups of k={k}; "
                     "pass a smaller batch_size")


def _labels(labels, n) -> np.ndarray:
  labels_N = np.asarray(labels)
  if labels_N.shape != (n,):
    raise ValueError(f"labels must be shaped ({n},), one per image; got "
                     f"{labels_N.shape}")
  if not np.issubdtype(labels_N.dtype, np.integer) or labels_N.min() < 0:
    raise ValueError("labels must be non-negative integer classes")
  return labels_N.astype(np.int32)


def _base(module, variables, input_shape):
  """F wrapped, and its variables checked against inputs of `input_shape`."""
  unknown = sorted(set(variables) - set(_COLLECTIONS))
  if "params" not in variables or unknown:
    raise ValueError(f"variables must hold 'params' (and 'batch_stats' with "
                     f"BatchNorm); got collections {sorted(variables)}")
  base = models.wrap(module, input_shape)
  base_vars = models.variables(variables["params"],
                               variables.get("batch_stats", {}))
  try:
    jax.eval_shape(base.apply, base_vars,
                   jax.ShapeDtypeStruct((1,) + tuple(input_shape),
                                        jnp.float32))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{base.name} with these variables does not accept "
                     f"inputs shaped (batch, *{tuple(input_shape)}): "
                     f"{models.first_line(e)}") from e
  return base, base_vars


def _parity(parity_model, base, input_shape) -> models.Model:
  """The parity models' architecture: F's unless `parity_model` is given."""
  if parity_model is None:
    return base
  parity = models.wrap(parity_model, input_shape)
  if parity.num_outputs != base.num_outputs:
    raise ValueError(f"the parity model returns {parity.num_outputs} outputs"
                     f" per example but F returns {base.num_outputs}")
  return parity


def _check_stacked(parity, parity_variables, r, input_shape) -> None:
  """Raises unless `parity_variables` are r stacked variables of `parity`."""
  sizes = {np.shape(a)[0] if np.ndim(a) else None
           for a in jax.tree.leaves(parity_variables)}
  if sizes != {r}:
    raise ValueError(f"parity_variables must have a leading axis of r={r} "
                     f"on every leaf; got leading sizes "
                     f"{sorted(sizes, key=str)}")
  try:
    out = jax.eval_shape(functools.partial(models.stacked_apply, parity),
                         parity_variables,
                         jax.ShapeDtypeStruct((1, r) + tuple(input_shape),
                                              jnp.float32))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"parity_variables do not fit {parity.name}: "
                     f"{models.first_line(e)}") from e
  if out.shape[2:] != (parity.num_outputs,):
    raise ValueError(f"the parity models return outputs shaped "
                     f"{out.shape[2:]}, F returns ({parity.num_outputs},)")


def _has_params(code, input_shape, num_outputs) -> bool:
  """Whether `code` has parameters to train (a learned code)."""
  params = jax.eval_shape(
      lambda key: code.init(key, input_shape, (num_outputs,)),
      jax.random.PRNGKey(0))
  return bool(jax.tree.leaves(params))


# Training.


def _fit(stage, step, state, x_N, arrays, *, key, code, epochs, batch_size,
         checkpoint_dir, callback, progress) -> training.TrainState:
  """Runs `epochs` epochs of `step` over coding groups, resuming from
  `checkpoint_dir`; epoch e draws its groups from `fold_in(key, e)`."""
  indices = training.group_indices(code.k, batch_size)
  epoch, steps = training.epoch(step, indices), training.epoch_steps(
      indices, len(x_N))
  device_arrays = jax.device_put(dict(images=x_N, **arrays))
  ckpt = checkpoints.Checkpointer(checkpoint_dir) if checkpoint_dir else None
  try:
    start = 0
    if ckpt is not None and ckpt.latest_step() is not None:
      state, meta = ckpt.restore(state, fallback=True)
      if meta.get("code") != code.name:
        raise ValueError(f"{checkpoint_dir} holds a training of "
                         f"{meta.get('code')}, not of {code.name}")
      start = meta["epoch"]
      logs.info(f"[{stage}] resuming from epoch {start} ({checkpoint_dir})")
    for e in range(start, epochs):
      began = time.perf_counter()
      state, loss_S = epoch(
          state, jax.random.fold_in(key, e), **device_arrays,
          progress=logs.Progress(steps, batch_size * code.k) if progress
          else None)
      loss = float(jnp.mean(loss_S))
      seconds = time.perf_counter() - began
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"[{stage}] loss became {loss} in epoch {e + 1}; lower the "
            "learning rate")
      record = {"epoch": e + 1, "loss": loss, "seconds": seconds,
                "examples_per_sec": loss_S.shape[0] * batch_size * code.k /
                                    seconds}
      if ckpt is not None:
        ckpt.save(e + 1, state, {"epoch": e + 1, "code": code.name})
      if callback is not None:
        callback(record)
      if progress:
        logs.info(f"[{stage}] epoch {e + 1}/{epochs} loss={loss:.5f} "
                  f"({record['examples_per_sec']:,.0f} examples/s)")
  finally:
    if ckpt is not None:
      ckpt.close()
  return state


def _identity(x):
  return x
