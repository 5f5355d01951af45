"""Base models F: the networks whose predictions coded computation protects.

`get(name, input_shape, num_outputs)` returns a `Model` of pure functions:

- `init(key, input_shape=None) -> variables`, a dict with "params" and, for
  models with BatchNorm, "batch_stats".
- `apply(variables, x_B..., train=False) -> outputs_BC` (float32). With
  `train=True` it returns `(outputs_BC, new_batch_stats)`, where
  `new_batch_stats` is `{}` for models without BatchNorm.

Inputs are `(B, H, W, C)` or `(B, H, W)` (a channel axis is added). `dtype` is
the computation dtype; parameters are always float32. Initialisation follows
the paper: Xavier-uniform conv kernels, N(0, 0.01^2) dense kernels, zero
biases, and PyTorch-default BatchNorm (momentum 0.1, i.e. flax 0.9; eps 1e-5).
Convolutions are `jaxcc._conv.Conv`: `nn.Conv`'s parameters and numerics,
lowered as im2col where XLA's CPU convolution is slow.

Forward passes used by training, evaluation and serving: `predict` (F on a
whole split of raw inputs), `apply_groups` (F on every member of coding
groups) and `stacked_apply` (r parity models stacked on a leading axis, each
on its own parity).
"""

import functools
import importlib
import inspect
import numbers
import operator
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import _conv as cpu_conv
from jaxcc import data

NAMES = ("mlp", "lenet5", "vgg11", "resnet18", "resnet152")

# Inputs taller than this get the ImageNet ResNet stem (7x7/2 conv + max-pool).
_CIFAR_STEM_MAX_HEIGHT = 64
# resnet18 drops its last stage for inputs at most this tall (MNIST-like).
_RESNET18_SMALL_HEIGHT = 28
# Smallest side that survives lenet5's VALID conv/pool/conv/pool.
_LENET5_MIN_SIZE = 16
_VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class Model(NamedTuple):
  """A base model as pure functions.

  Attributes:
    name: one of `NAMES`.
    init: `(key, input_shape=None) -> variables`; `input_shape` (one example)
      defaults to, and must match, the one given to `get`.
    apply: `(variables, x_B..., train=False) -> outputs_BC`, or
      `(outputs_BC, new_batch_stats)` when `train=True`.
    num_outputs: C, the size of the output vector of one example.
  """
  name: str
  init: Callable[..., Any]
  apply: Callable[..., Any]
  num_outputs: int


def _conv(features, kernel_size, dtype, strides=1, padding="SAME",
          use_bias=True):
  return cpu_conv.Conv(features, (kernel_size, kernel_size), strides=strides,
                       padding=padding, use_bias=use_bias, dtype=dtype,
                       param_dtype=jnp.float32,
                       kernel_init=nn.initializers.xavier_uniform())


def _dense(features, dtype):
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(stddev=0.01))


def _batch_norm(x, train, dtype):
  """BatchNorm computed in float32 (for stable statistics), cast to dtype."""
  x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   dtype=jnp.float32, param_dtype=jnp.float32)(
                       x.astype(jnp.float32))
  return x.astype(dtype)


def _scaled(features, width):
  """`features` times the width multiplier, at least 1."""
  return max(1, round(features * width))


class MLP(nn.Module):
  """Base-MLP: flatten, FC 200, ReLU, FC 100, ReLU, FC num_outputs."""
  num_outputs: int
  dtype: Any = jnp.float32
  width: float = 1.0

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    for features in (200, 100):
      x = nn.relu(_dense(_scaled(features, self.width), self.dtype)(x))
    return _dense(self.num_outputs, self.dtype)(x)


class LeNet5(nn.Module):
  """LeNet-5: two conv/ReLU/max-pool stages and FC 120, 84, num_outputs."""
  num_outputs: int
  first_padding: str = "VALID"
  dtype: Any = jnp.float32
  width: float = 1.0

  @nn.compact
  def __call__(self, x, train=False):
    w = self.width
    x = _conv(_scaled(6, w), 5, self.dtype, padding=self.first_padding)(x)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = _conv(_scaled(16, w), 5, self.dtype, padding="VALID")(x)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    for features in (120, 84):
      x = nn.relu(_dense(_scaled(features, w), self.dtype)(x))
    return _dense(self.num_outputs, self.dtype)(x)


class VGG11(nn.Module):
  """VGG-11 with BatchNorm, global average pooling and one FC layer."""
  num_outputs: int
  dtype: Any = jnp.float32
  width: float = 1.0

  @nn.compact
  def __call__(self, x, train=False):
    for layer in _VGG11_CFG:
      if layer == "M":
        # Skip pooling along a dimension that is already down to size 1.
        window = tuple(min(2, size) for size in x.shape[1:3])
        x = nn.max_pool(x, window, strides=window)
      else:
        x = _conv(_scaled(layer, self.width), 3, self.dtype)(x)
        x = nn.relu(_batch_norm(x, train, self.dtype))
    x = jnp.mean(x, axis=(1, 2))
    return _dense(self.num_outputs, self.dtype)(x)


class BasicBlock(nn.Module):
  """ResNet basic block: two 3x3 convs with a residual connection."""
  features: int
  strides: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    y = _conv(self.features, 3, self.dtype, self.strides, 1, False)(x)
    y = nn.relu(_batch_norm(y, train, self.dtype))
    y = _conv(self.features, 3, self.dtype, 1, 1, False)(y)
    y = _batch_norm(y, train, self.dtype)
    return nn.relu(y + _shortcut(x, y.shape[-1], self.strides, train,
                                 self.dtype))


class Bottleneck(nn.Module):
  """ResNet bottleneck block (1x1, strided 3x3, 1x1 with 4x expansion)."""
  features: int
  strides: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    y = _conv(self.features, 1, self.dtype, 1, "VALID", False)(x)
    y = nn.relu(_batch_norm(y, train, self.dtype))
    y = _conv(self.features, 3, self.dtype, self.strides, 1, False)(y)
    y = nn.relu(_batch_norm(y, train, self.dtype))
    y = _conv(self.features * 4, 1, self.dtype, 1, "VALID", False)(y)
    y = _batch_norm(y, train, self.dtype)
    return nn.relu(y + _shortcut(x, y.shape[-1], self.strides, train,
                                 self.dtype))


def _shortcut(x, features, strides, train, dtype):
  """Identity, or a strided 1x1 conv + BN where the shape changes."""
  if strides == 1 and x.shape[-1] == features:
    return x
  x = _conv(features, 1, dtype, strides, "VALID", False)(x)
  return _batch_norm(x, train, dtype)


class ResNet(nn.Module):
  """ResNet with a CIFAR (3x3 conv) or ImageNet (7x7/2 conv + pool) stem."""
  block: type
  stage_sizes: Sequence[int]
  num_outputs: int
  imagenet_stem: bool = False
  dtype: Any = jnp.float32
  width: float = 1.0

  @nn.compact
  def __call__(self, x, train=False):
    stem = _scaled(64, self.width)
    if self.imagenet_stem:
      x = _conv(stem, 7, self.dtype, 2, 3, False)(x)
      x = nn.relu(_batch_norm(x, train, self.dtype))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = _conv(stem, 3, self.dtype, 1, 1, False)(x)
      x = nn.relu(_batch_norm(x, train, self.dtype))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = self.block(_scaled(64 * 2**stage, self.width), strides,
                       self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return _dense(self.num_outputs, self.dtype)(x)


def _lenet5_first_padding(shape):
  """First-conv padding of LeNet-5; ValueError if `shape` is too small."""
  if shape[:2] == (28, 28):
    return "SAME"  # The classic MNIST LeNet-5.
  if min(shape[:2]) < _LENET5_MIN_SIZE:
    raise ValueError(f"lenet5 needs inputs of at least {_LENET5_MIN_SIZE}x"
                     f"{_LENET5_MIN_SIZE}; got input_shape {shape}")
  return "VALID"


def _module(name, shape, num_outputs, dtype, width):
  """The flax module of model `name` for examples of `(H, W, C)` `shape`."""
  if name == "mlp":
    return MLP(num_outputs, dtype, width)
  if name == "lenet5":
    return LeNet5(num_outputs, _lenet5_first_padding(shape), dtype, width)
  if name == "vgg11":
    return VGG11(num_outputs, dtype, width)
  imagenet_stem = shape[0] > _CIFAR_STEM_MAX_HEIGHT
  if name == "resnet18":
    small = shape[0] <= _RESNET18_SMALL_HEIGHT
    stages = (2, 2, 2) if small else (2, 2, 2, 2)
    return ResNet(BasicBlock, stages, num_outputs, imagenet_stem, dtype,
                  width)
  return ResNet(Bottleneck, (3, 8, 36, 3), num_outputs, imagenet_stem, dtype,
                width)


def _example_shape(input_shape):
  """`(H, W, C)` from `(H, W, C)` or `(H, W)`; ValueError otherwise."""
  try:
    shape = tuple(operator.index(s) for s in input_shape)
  except TypeError:
    shape = ()
  if len(shape) not in (2, 3) or min(shape) < 1:
    raise ValueError(f"input_shape must be (H, W) or (H, W, C) of positive "
                     f"ints (one example, no batch axis); got {input_shape}")
  return shape if len(shape) == 3 else shape + (1,)


def get(name: str, input_shape: tuple, num_outputs: int,
        dtype=jnp.float32, width: float = 1.0) -> Model:
  """The base model `name` for examples of `input_shape`.

  Args:
    name: one of `NAMES`, or `package.module:Name` for any importable
      `flax.linen.Module` class or factory (see `imported`).
    input_shape: shape of one example, `(H, W, C)` or `(H, W)`.
    num_outputs: C, e.g. the number of classes.
    dtype: computation dtype (e.g. `jnp.bfloat16`); params stay float32 and
      outputs are returned as float32.
    width: multiplies every hidden layer's units and every conv's features
      (rounded, at least 1); 1 is the architecture as published.

  Returns:
    A `Model`.
  """
  if isinstance(name, str) and ":" in name:
    if width != 1:
      raise ValueError(f"width={width} needs a zoo model; {name!r} is "
                       "imported as it is")
    return imported(name, input_shape, num_outputs)
  if name not in NAMES:
    raise ValueError(f"unknown model {name!r}; known models: {NAMES} or "
                     "'package.module:Name'")
  if not isinstance(num_outputs, numbers.Integral) or num_outputs < 1:
    raise ValueError(f"num_outputs must be a positive int; got {num_outputs}")
  if isinstance(width, bool) or not isinstance(width, numbers.Real) or not (
      width > 0):
    raise ValueError(f"width must be a number > 0; got {width!r}")
  num_outputs = int(num_outputs)
  shape = _example_shape(input_shape)
  built_for = tuple(input_shape)

  def prepare(x):
    x_shape = x.shape[1:]
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != shape:
      raise ValueError(f"apply expects inputs shaped (batch, *input_shape) "
                       f"with input_shape {built_for} (as given to "
                       f"get); got per-example shape {x_shape}")
    return x.astype(dtype)

  return _pure(_module(name, shape, num_outputs, dtype, width), name,
               num_outputs, jnp.zeros((1,) + shape, dtype), prepare,
               example_shape=_example_shape)


# F's forward passes over datasets and coding groups.

PREDICT_BATCH = 512


def variables(params, batch_stats) -> dict:
  """Flax variables from a training state's params and BatchNorm state."""
  return {"params": params, **({"batch_stats": batch_stats}
                               if batch_stats else {})}


def predict(model: Model, model_variables, images, mean, std,
            batch_size: int = PREDICT_BATCH) -> np.ndarray:
  """F's outputs `(N, C)` on raw inputs, in fixed-size padded batches."""
  fn = _predict_fn(model, tuple(mean), tuple(std))
  return np.concatenate([fn(model_variables, chunk)[:n]
                         for chunk, n in padded_chunks(images, batch_size)])


def stacked_apply(model: Model, stacked_vars, parities_BR) -> jax.Array:
  """Parity model j (leading axis of `stacked_vars`) on parity j: `(B,R,C)`."""
  out_RBC = jax.vmap(model.apply, in_axes=(0, 1))(stacked_vars, parities_BR)
  return jnp.moveaxis(out_RBC, 0, 1)


def apply_groups(model: Model, model_variables, x_BG) -> jax.Array:
  """F on every member of a group axis: `(B, G, ...) -> (B, G, C)`."""
  b, g = x_BG.shape[:2]
  out = model.apply(model_variables, x_BG.reshape((b * g,) + x_BG.shape[2:]))
  return out.reshape(b, g, -1)


def padded_chunks(array, size):
  """Yields fixed-size chunks (the last one padded) and their real lengths."""
  for start in range(0, len(array), size):
    chunk = array[start:start + size]
    n = len(chunk)
    if n < size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
    yield chunk, n


@functools.lru_cache(maxsize=None)
def _predict_fn(model, mean, std):
  mean, std = np.float32(mean), np.float32(std)

  @jax.jit
  def fn(model_variables, images):
    return model.apply(model_variables, data.normalize(images, mean, std))
  return fn


def imported(spec: str, input_shape, num_outputs: int) -> Model:
  """F named `package.module:Name`: a `flax.linen.Module` class or factory.

  It is called with `num_outputs=` when it takes that argument, else with
  none, and must return a module whose outputs are `(batch, num_outputs)`;
  `wrap` adapts it (inputs float32, NHWC as the dataset gives them).
  """
  module_name, _, attr = spec.partition(":")
  try:
    factory = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError, ValueError) as e:
    raise ValueError(f"model {spec!r} cannot be imported: {first_line(e)}"
                     ) from e
  if not callable(factory):
    raise ValueError(f"model {spec!r} is a {type(factory).__name__}, not a "
                     "flax.linen.Module class or factory")
  try:
    takes = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    takes = {}
  try:
    module = factory(num_outputs=num_outputs) if "num_outputs" in takes else (
        factory())
  except TypeError as e:
    raise ValueError(f"model {spec!r} must be callable with num_outputs= or "
                     f"with no arguments: {first_line(e)}") from e
  if not isinstance(module, nn.Module):
    raise ValueError(f"model {spec!r} gave a {type(module).__name__}, not a "
                     "flax.linen.Module")
  model = wrap(module, _example_shape(input_shape), name=spec)
  if model.num_outputs != num_outputs:
    raise ValueError(f"model {spec!r} has {model.num_outputs} outputs; the "
                     f"dataset needs {num_outputs}")
  return model


def wrap(module, input_shape, name: Optional[str] = None) -> Model:
  """A `jaxcc.models.Model` around a flax module F for inputs of one example
  shaped `input_shape`; its `num_outputs` is read from F's output `(B, C)`.

  `apply(variables, x_B..., train=False)` passes `train` on when F's
  `__call__` takes it; with `train=True` it returns `(outputs_BC,
  new_batch_stats)`.
  """
  shape = tuple(int(s) for s in input_shape)
  try:
    hash(module)
  except TypeError:  # A field that is not hashable: nothing to reuse.
    return _wrap(module, shape, name)
  return _cached_wrap(module, shape, name)


@functools.lru_cache(maxsize=32)
def _cached_wrap(module, shape, name):
  """`_wrap`, reused for equal modules so that compilations are reused."""
  return _wrap(module, shape, name)


def _wrap(module, shape, name):
  name = name or type(module).__name__
  takes_train = "train" in inspect.signature(module.__call__).parameters
  eval_kw = {"train": False} if takes_train else {}
  x_1 = jnp.zeros((1,) + shape, jnp.float32)
  try:
    out = jax.eval_shape(
        lambda key: module.init_with_output(key, x_1, **eval_kw)[0],
        jax.random.PRNGKey(0))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{name} does not accept inputs shaped (batch, "
                     f"*{shape}): {first_line(e)}") from e
  if len(getattr(out, "shape", ())) != 2:
    raise ValueError(f"{name} must return outputs shaped (batch, C); got "
                     f"{getattr(out, 'shape', type(out).__name__)}")

  def prepare(x):
    if x.shape[1:] != shape:
      raise ValueError(f"{name} was wrapped for inputs shaped (batch, "
                       f"*{shape}); got per-example shape {x.shape[1:]}")
    return x

  return _pure(module, name, int(out.shape[1]), x_1, prepare, takes_train)


def _pure(module, name, num_outputs, x_1, prepare, takes_train=True, *,
          example_shape=tuple) -> Model:
  """The `Model` of a flax `module` for inputs shaped like the batch `x_1`.

  `init(key, input_shape)` checks `example_shape(input_shape)` against one
  example of `x_1`; `apply` passes its inputs through `prepare(x)` (checks
  and casts them) and `train` on to the module when it `takes_train`.
  """
  def kwargs(train):
    return {"train": train} if takes_train else {}

  shape = x_1.shape[1:]
  # One compilation is much faster than running the initialisers eagerly.
  init_jit = jax.jit(lambda key: module.init(key, x_1, **kwargs(False)))

  def init(key, input_shape=None):
    if input_shape is not None and example_shape(input_shape) != shape:
      raise ValueError(f"init got input_shape {tuple(input_shape)}, but "
                       f"{name} was built for {shape}")
    return init_jit(key)

  def apply(variables, x, train=False):
    x = prepare(jnp.asarray(x))
    if not train:
      return module.apply(variables, x, **kwargs(False)).astype(jnp.float32)
    outputs, updates = module.apply(variables, x, mutable=["batch_stats"],
                                    **kwargs(True))
    return outputs.astype(jnp.float32), updates.get("batch_stats", {})

  return Model(name=name, init=init, apply=apply, num_outputs=num_outputs)


def first_line(error: BaseException) -> str:
  """The first line of an error's message (its type name if empty)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
