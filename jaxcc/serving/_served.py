"""What a serving system serves: F, its parity models, the code and I/O.

Model instances run in other processes (worker processes, Ray replicas), so
models are given as picklable *factories*: calling one (in the instance's
process) builds and returns `fn(x_B...) -> y_BC`, a jitted function over
NumPy arrays.
"""

import functools
import pickle
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import codes
from jaxcc import data
from jaxcc import models
from jaxcc import workdir as workdir_lib


class Served(NamedTuple):
  """A base model, its parity models and how queries reach them.

  Attributes:
    base: factory of F.
    parities: factories of the r parity models, in parity order.
    code: the code whose parities the parity models compute.
    input_shape: shape of one example as clients send it.
    input_dtype: dtype clients send (e.g. uint8 images).
    num_outputs: C, the length of one example's output.
    preprocess: raw client input `(B, *input_shape)` -> float32 model input.
  """
  base: Callable[[], Callable]
  parities: tuple
  code: codes.Code
  input_shape: tuple
  input_dtype: np.dtype
  num_outputs: int
  preprocess: Callable[[np.ndarray], np.ndarray]

  @property
  def default_output(self) -> np.ndarray:
    """Clipper's default prediction: a constant (all-zero) output."""
    return np.zeros(self.num_outputs, np.float32)


def flax_model(name, input_shape, num_outputs, model_variables):
  """Factory of a `jaxcc.models` model with the given variables."""
  return functools.partial(_flax_fn, name, tuple(input_shape), num_outputs,
                           jax.tree.map(np.asarray, model_variables))


def flax_module(module, model_variables, input_shape):
  """Factory of any `flax.linen.Module` F with `model_variables`.

  F runs with `train=False` when its `__call__` takes `train`. The module is
  pickled to reach the instances' processes, so its class must be importable
  there (defined in a module, not in `__main__` of a notebook).
  """
  factory = functools.partial(_module_fn, module, tuple(input_shape),
                              jax.tree.map(np.asarray, model_variables))
  try:
    pickle.dumps(factory)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{type(module).__name__} cannot be pickled for the "
                     f"model instances ({type(e).__name__}: {e}); define "
                     "its class at the top level of an importable module"
                     ) from e
  return factory


def from_model(module, variables, parity_variables, code: codes.Code, *,
               input_shape, input_dtype=np.float32, preprocess=None,
               parity_module=None) -> Served:
  """A `Served` system of a user's model, without a workdir.

  Args:
    module: F, a `flax.linen.Module`; `variables` its trained variables.
    parity_variables: the r parity models' variables stacked on a leading
      axis, as `jaxcc.fit_parity_models` returns them.
    code: the code the parity models were trained for.
    input_shape: the shape of one example as clients send it.
    input_dtype: the dtype clients send.
    preprocess: raw client input `(B, *input_shape)` -> F's float32 input
      (default: a cast to float32); it runs in the frontend.
    parity_module: the parity models' architecture (default: F's).
  """
  shape = tuple(int(d) for d in input_shape)
  num_outputs = int(models.wrap(module, shape).num_outputs)
  parity_module = module if parity_module is None else parity_module
  r = {np.shape(a)[0] for a in jax.tree.leaves(parity_variables)}
  if r != {code.r}:
    raise ValueError(f"parity_variables must hold the {code.r} parity "
                     f"models of {code.name} on a leading axis; leading "
                     f"sizes {sorted(r)}")
  parity_outputs = int(models.wrap(parity_module, shape).num_outputs)
  if parity_outputs != num_outputs:
    raise ValueError(f"the parity model has {parity_outputs} outputs, F "
                     f"has {num_outputs}")
  preprocess = _as_float32 if preprocess is None else preprocess
  return Served(
      base=flax_module(module, variables, shape),
      parities=tuple(flax_module(parity_module,
                                 jax.tree.map(lambda a, j=j: a[j],
                                              parity_variables), shape)
                     for j in range(code.r)),
      code=code, input_shape=shape, input_dtype=np.dtype(input_dtype),
      num_outputs=num_outputs,
      preprocess=lambda x: np.asarray(preprocess(x), np.float32))


def linear_model(w_DC):
  """Factory of `x -> flatten(x) @ w`: exact under any linear code."""
  return functools.partial(_linear_fn, np.asarray(w_DC, np.float32))


def linear(w_DC, k: int, input_shape) -> Served:
  """A linear F served with the summation code and F_P = F (exact)."""
  factory = linear_model(w_DC)
  return Served(base=factory, parities=(factory,), code=codes.summation(k),
                input_shape=tuple(input_shape), input_dtype=np.dtype(
                    np.float32), num_outputs=int(np.shape(w_DC)[1]),
                preprocess=_as_float32)


def with_code(served: Served, code: codes.Code) -> Served:
  """`served`'s F under a training-free `code` (Berrut): F itself computes
  every coded query, so the r "parity" instances run F too.

  With a non-systematic code (`code.systematic` False) the frontend sends
  all N = k + r coded queries to instances of F and decodes every answer.
  """
  if code.parity_target is not None:
    raise ValueError(f"{code.name} expects parity models (it has a parity "
                     "target); serve it with the parity models trained for "
                     "it (from_workdir, from_model)")
  return served._replace(parities=(served.base,) * code.r, code=code)


def from_workdir(workdir: str, code=None):
  """F and its parity models trained by `train.py` in `workdir`.

  Args:
    workdir: a `train.py` workdir with parity models, or any workdir when
      `code` is given.
    code: serve the workdir's F under this training-free code instead
      (`with_code`), e.g. `jaxcc.codes.berrut(2, 1, systematic=False)`.

  Returns:
    `(served, dataset)`: the `Served` system (uint8 images in, normalised
    inside) and the experiment's dataset (its test split makes queries).
  """
  exp, base, stage2 = workdir_lib.restore(workdir)
  if code is None and exp.approach.name != "parity-model":
    raise ValueError(f"{workdir} trained a {exp.approach.name!r} stage; "
                     "serving needs parity models or a training-free code")
  ds = exp.dataset

  def factory(model_variables):
    return flax_model(exp.config.model, ds.input_shape,
                      exp.model.num_outputs, model_variables)

  served = Served(
      base=factory(models.variables(base.params, base.batch_stats)),
      parities=(), code=exp.code, input_shape=tuple(ds.input_shape),
      input_dtype=np.dtype(np.uint8), num_outputs=exp.model.num_outputs,
      preprocess=functools.partial(_normalize, np.asarray(ds.mean),
                                   np.asarray(ds.std)))
  if code is not None:
    return with_code(served, code), ds
  stacked = models.variables(stage2.params, stage2.batch_stats)
  return served._replace(parities=tuple(
      factory(jax.tree.map(lambda a, j=j: a[j], stacked))
      for j in range(exp.code.r))), ds


def _flax_fn(name, input_shape, num_outputs, model_variables):
  model = models.get(name, input_shape, num_outputs)
  apply = jax.jit(model.apply)
  return lambda x_B: np.asarray(apply(model_variables, x_B))


def _module_fn(module, input_shape, model_variables):
  apply = jax.jit(models.wrap(module, input_shape).apply)
  return lambda x_B: np.asarray(apply(model_variables, x_B))


def _linear_fn(w_DC):
  w = jnp.asarray(w_DC)
  apply = jax.jit(lambda x_B: x_B.reshape(x_B.shape[0], -1) @ w)
  return lambda x_B: np.asarray(apply(x_B))


def _normalize(mean, std, images):
  return np.asarray(data.normalize(images, mean, std), np.float32)


def _as_float32(x):
  return np.asarray(x, np.float32)
