"""Convolutions on the CPU: jaxcc's training steps against PyTorch, one run.

  python benchmarks/conv_vs_torch.py [--rows lenet5,encoder,resnet18] \
      [--batch 64] [--resnet_batch 16] [--repeats 9] [--threads 0] \
      [--out runs/conv_vs_torch] [--tries] [--layers]

Rows, each one jitted jaxcc step (built by `jaxcc.training`'s step builders
from `jaxcc.models.get` and `jaxcc.codes`, as `train.py` builds it) beside a
PyTorch step of the same layer shapes, batch, loss and optimiser (Adam with
L2 weight decay 1e-5 added to the gradient, as `training.optimizer`),
float32, synthetic device-resident data:

- `lenet5`: the parity-model step (summation code, k = 2, `--batch` groups):
  gather k images a group, normalise, add, LeNet-5 on the parity, MSE to the
  sum of F's outputs.
- `encoder`: the learned-code step (ConvEncoder, k = 2, r = 1, every erasure
  pattern, `--batch` groups) through the frozen F = Base-MLP, loss mse-base,
  as the learned conv row of `benchmark.py`.
- `resnet18`: F's training step on CIFAR shapes (32x32x3, `--resnet_batch`
  images, cross-entropy, BatchNorm in training mode).

Timing: a warm-up call each, then `--repeats` calls of each framework,
alternating (in reverse order every other repeat) so that machine load hits
both alike; medians. Torch runs on `--threads` threads (0: as many as the
CPUs JAX's CPU backend uses). Without torch the PyTorch columns are skipped
with a note. `--tries` adds each jaxcc step with other conv lowerings.
`--layers` instead times every conv of the rows alone (forward, input and
kernel gradients; XLA's convolution, `jaxcc._conv`'s im2col, torch): where
the steps' time goes, and the minimal reproduction of a remaining gap.
Writes conv_vs_torch.md / conv_layers.md and .json under `--out` (after
every row) and prints the table. Results: docs/BENCHMARKS.md, "Convolutions
on CPU against PyTorch".
"""

import contextlib
import functools
import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
from jaxcc import _conv as cpu_conv
from jaxcc import codes
from jaxcc import erasures
from jaxcc import models
from jaxcc import timing
from jaxcc import training
from jaxcc.codes import _learned as codes_learned

try:
  import torch
  from torch import nn as tnn
  from torch.nn import functional as tf
except ImportError:  # torch is not a jaxcc dependency.
  torch = None

ROWS = ("lenet5", "encoder", "resnet18")
_ROWS = flags.DEFINE_list("rows", list(ROWS), f"Rows to time, of {ROWS}.")
_BATCH = flags.DEFINE_integer("batch", 64, "Coding groups per step (lenet5, "
                              "encoder).")
_RESNET_BATCH = flags.DEFINE_integer("resnet_batch", 16, "Images per "
                                     "ResNet-18 step.")
_REPEATS = flags.DEFINE_integer("repeats", 9, "Timed calls per framework.")
_THREADS = flags.DEFINE_integer("threads", 0, "Torch threads (0: the CPUs "
                                "JAX uses, os.cpu_count()).")
_OUT = flags.DEFINE_string("out", "runs/conv_vs_torch", "Output directory.")
_TRIES = flags.DEFINE_bool("tries", False, "Also time each jaxcc step with "
                           "other conv lowerings (XLA convs for the models, "
                           "jaxcc._conv in the conv encoder).")
_LAYERS = flags.DEFINE_bool("layers", False, "Instead of the steps, time "
                            "each of their convs alone (LAYERS).")

K = 2
NUM_CLASSES = 10
MNIST, CIFAR = (28, 28, 1), (32, 32, 3)
WEIGHT_DECAY = 1e-5
LEARNING_RATE = 1e-3


# JAX: jaxcc's own steps.


def _images(n, shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8)


def _normal(*shape, seed=1):
  return np.random.default_rng(seed).standard_normal(shape, np.float32)


def _jax_call(step, state, **arrays):
  """`call()` running one jitted (state-donating) step from the last state."""
  arrays = jax.device_put(arrays)
  compiled = jax.jit(step, donate_argnums=0).lower(state, **arrays).compile()
  box = [state]

  def call():
    box[0], loss = compiled(box[0], **arrays)
    return loss
  return call


def jax_lenet5(batch):
  model = models.get("lenet5", MNIST, NUM_CLASSES)
  code = codes.summation(K)
  opt = training.optimizer(LEARNING_RATE, WEIGHT_DECAY)
  vs = jax.vmap(model.init)(jax.random.split(jax.random.key(0), code.r))
  state = training.TrainState(vs["params"], {}, opt.init(vs["params"]))
  step = training.parity_step(model, code, opt, _jax_normalize(1))
  return _jax_call(step, state, idx_BK=_idx(batch), images=_images(
      batch * K, MNIST), targets=_normal(batch * K, NUM_CLASSES))


def jax_encoder(batch, encode=None):
  model = models.get("mlp", MNIST, NUM_CLASSES)
  code = codes.learned(K, 1, encoder="conv")
  if encode is not None:
    code = code._replace(encode=encode)
  opt = training.optimizer(LEARNING_RATE, WEIGHT_DECAY)
  params = code.init(jax.random.key(0), MNIST, (NUM_CLASSES,))
  state = training.TrainState(params, {}, opt.init(params))
  step = training.learned_step(code, model, opt, "mse-base",
                               erasures.patterns(K, 1), _jax_normalize(1))
  n = batch * K
  return _jax_call(step, state, idx_BK=_idx(batch), images=_images(n, MNIST),
                   outputs=_normal(n, NUM_CLASSES),
                   labels=np.zeros(n, np.int32),
                   base_vars=model.init(jax.random.key(1)))


def jax_resnet18(batch):
  model = models.get("resnet18", CIFAR, NUM_CLASSES)
  opt = training.optimizer(LEARNING_RATE, WEIGHT_DECAY)
  state = training.init_base(model, opt, jax.random.key(0))
  step = training.base_step(model, opt, _cross_entropy, _jax_normalize(3))
  return _jax_call(step, state, idx_B=np.arange(batch, dtype=np.int32),
                   images=_images(batch, CIFAR),
                   labels=np.arange(batch, dtype=np.int32) % NUM_CLASSES)


def _cross_entropy(logits_BC, labels_B):
  return optax.softmax_cross_entropy_with_integer_labels(logits_BC,
                                                         labels_B).mean()


def _jax_normalize(channels):
  return training.normalizer([0.5] * channels, [0.25] * channels)


def _idx(batch):
  return np.arange(batch * K, dtype=np.int32).reshape(batch, K)


# Tries: the same steps with other conv lowerings.


@contextlib.contextmanager
def _xla_convs():
  """Inside: every conv of `jaxcc.models` lowered by XLA (as before
  `jaxcc._conv`); the steps built inside are compiled inside."""
  original = cpu_conv.conv

  def xla_conv(x, kernel, strides, padding, dilation, lowering):
    del lowering
    return original(x, kernel, strides, padding, dilation, "xla")
  cpu_conv.conv = xla_conv
  try:
    yield
  finally:
    cpu_conv.conv = original


def _im2col_encode(params, x_BKHW1):
  """The conv encoder's `encode` (single-channel images `(B, K, H, W, 1)`)
  with its convs computed by `jaxcc._conv.conv` ("auto")."""
  enc = params["encoder"]
  z_BHWC = jnp.transpose(x_BKHW1[..., 0].astype(jnp.float32), (0, 2, 3, 1))
  dilations = codes_learned.CONV_DILATIONS + (1,)
  for i, dilation in enumerate(dilations):
    layer = enc[f"conv_{i}"]
    z_BHWC = cpu_conv.conv(z_BHWC, layer["kernel"], dilation=dilation)
    z_BHWC = z_BHWC + layer["bias"].reshape(1, 1, 1, -1)
    if i < len(dilations) - 1:
      z_BHWC = jax.nn.relu(z_BHWC)
  return jnp.transpose(z_BHWC, (0, 3, 1, 2))[..., None]


def _tries(row, batch):
  """`{name: call}`: the row's jaxcc step with other lowerings."""
  if row == "encoder":
    return {"jax, _conv encoder": jax_encoder(batch, _im2col_encode)}
  with _xla_convs():
    return {"jax, XLA convs": (jax_lenet5 if row == "lenet5" else
                               jax_resnet18)(batch)}


# PyTorch: the same layer shapes, written out.


def _adam(params):
  return torch.optim.Adam(params, lr=LEARNING_RATE,
                          weight_decay=WEIGHT_DECAY)


def _torch_images(n, shape):
  """uint8 NCHW images, normalised inside the step as jaxcc does."""
  return torch.from_numpy(_images(n, shape)).permute(0, 3, 1, 2).contiguous()


def _torch_normalize(images):
  return (images.float() / 255.0 - 0.5) / 0.25


class _LeNet5(tnn.Module if torch else object):
  """Conv 6@5x5 (SAME), pool, conv 16@5x5, pool, FC 120, 84, 10."""

  def __init__(self):
    super().__init__()
    self.conv1 = tnn.Conv2d(1, 6, 5, padding=2)
    self.conv2 = tnn.Conv2d(6, 16, 5)
    self.fc = tnn.Sequential(tnn.Linear(400, 120), tnn.ReLU(),
                             tnn.Linear(120, 84), tnn.ReLU(),
                             tnn.Linear(84, NUM_CLASSES))

  def forward(self, x):
    x = tf.max_pool2d(tf.relu(self.conv1(x)), 2)
    x = tf.max_pool2d(tf.relu(self.conv2(x)), 2)
    return self.fc(x.flatten(1))


def torch_lenet5(batch):
  net = _LeNet5()
  opt = _adam(net.parameters())
  images = _torch_images(batch * K, MNIST)
  targets = torch.from_numpy(_normal(batch * K, NUM_CLASSES))
  idx_BK = torch.from_numpy(_idx(batch)).long()

  def call():
    x_BK = _torch_normalize(images[idx_BK])  # (B, K, 1, H, W)
    parity = x_BK.sum(1)
    target = targets[idx_BK].sum(1)
    loss = tf.mse_loss(net(parity), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
  return call


class _ConvEncoder(tnn.Module if torch else object):
  """k channels in; 3x3 convs, dilations 1, 1, 2, 4, 8, 1, 20k channels;
  a 1x1 conv to r channels; ReLU after all but the last."""

  def __init__(self, k, r):
    super().__init__()
    width, layers, c_in = 20 * k, [], k
    for d in (1, 1, 2, 4, 8, 1):
      layers += [tnn.Conv2d(c_in, width, 3, padding=d, dilation=d),
                 tnn.ReLU()]
      c_in = width
    self.net = tnn.Sequential(*layers, tnn.Conv2d(width, r, 1))

  def forward(self, x):
    return self.net(x)


def _base_mlp():
  return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 200), tnn.ReLU(),
                        tnn.Linear(200, 100), tnn.ReLU(),
                        tnn.Linear(100, NUM_CLASSES))


def torch_encoder(batch):
  base = _base_mlp().requires_grad_(False)
  encoder = _ConvEncoder(K, 1)
  m, n = NUM_CLASSES, K + 1
  decoder = tnn.Sequential(tnn.Linear(n * m, K * m), tnn.ReLU(),
                           tnn.Linear(K * m, K * m), tnn.ReLU(),
                           tnn.Linear(K * m, K * m))
  opt = _adam(list(encoder.parameters()) + list(decoder.parameters()))
  images = torch.from_numpy(_images(batch * K, MNIST)[..., 0])
  outputs = torch.from_numpy(_normal(batch * K, NUM_CLASSES))
  idx_BK = torch.from_numpy(_idx(batch)).long()

  def call():
    x_BK = _torch_normalize(images[idx_BK])  # (B, K, H, W): K channels
    y_BK = outputs[idx_BK]
    parity = base(encoder(x_BK))  # (B, C), r = 1
    loss = 0.0
    for erased in range(K):  # every pattern: one data output lost
      keep = torch.ones(n, 1)
      keep[erased] = 0.0
      y_BN = torch.cat([y_BK, parity[:, None]], 1) * keep
      recon = decoder(y_BN.flatten(1)).view(batch, K, m)
      loss = loss + tf.mse_loss(recon[:, erased], y_BK[:, erased])
    loss = loss / K
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
  return call


class _BasicBlock(tnn.Module if torch else object):
  """Two 3x3 convs with BN and a (1x1 conv + BN) shortcut on a change."""

  def __init__(self, c_in, c_out, stride):
    super().__init__()
    self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn1 = tnn.BatchNorm2d(c_out)
    self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(c_out)
    self.shortcut = tnn.Sequential()
    if stride != 1 or c_in != c_out:
      self.shortcut = tnn.Sequential(
          tnn.Conv2d(c_in, c_out, 1, stride, bias=False),
          tnn.BatchNorm2d(c_out))

  def forward(self, x):
    y = tf.relu(self.bn1(self.conv1(x)))
    return tf.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def _resnet18():
  """CIFAR ResNet-18: 3x3 stem, stages of 2 blocks, 64 to 512 channels."""
  layers = [tnn.Conv2d(3, 64, 3, 1, 1, bias=False), tnn.BatchNorm2d(64),
            tnn.ReLU()]
  c_in = 64
  for stage in range(4):
    for i in range(2):
      c_out = 64 * 2**stage
      layers.append(_BasicBlock(c_in, c_out, 2 if stage and not i else 1))
      c_in = c_out
  return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
                        tnn.Linear(512, NUM_CLASSES))


def torch_resnet18(batch):
  net = _resnet18().train()
  opt = _adam(net.parameters())
  images = _torch_images(batch, CIFAR)
  labels = torch.arange(batch) % NUM_CLASSES
  idx_B = torch.arange(batch)

  def call():
    loss = tf.cross_entropy(net(_torch_normalize(images[idx_B])),
                            labels[idx_B])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
  return call


# Layers: each conv of the rows alone, forward and both gradients.

# name -> (input BHWC, kernel size, output channels, strides, padding,
# dilation).
LAYERS = {
    "lenet5 conv 1": ((64, 28, 28, 1), 5, 6, 1, "SAME", 1),
    "lenet5 conv 2": ((64, 14, 14, 6), 5, 16, 1, "VALID", 1),
    "encoder conv 0": ((64, 28, 28, 2), 3, 40, 1, "SAME", 1),
    "encoder conv 1": ((64, 28, 28, 40), 3, 40, 1, "SAME", 1),
    "encoder conv 4 (dilation 8)": ((64, 28, 28, 40), 3, 40, 1, "SAME", 8),
    "encoder conv 6 (1x1)": ((64, 28, 28, 40), 1, 1, 1, "VALID", 1),
    "resnet18 stem": ((16, 32, 32, 3), 3, 64, 1, "SAME", 1),
    "resnet18 conv 64": ((16, 32, 32, 64), 3, 64, 1, "SAME", 1),
    "resnet18 shortcut (1x1/2)": ((16, 32, 32, 64), 1, 128, 2, "VALID", 1),
}


def layer_calls(x_shape, size, features, strides, padding, dilation):
  """`{side: call}`: one conv's outputs and the gradients of its input and
  kernel by XLA, by `jaxcc._conv`'s im2col and by torch."""
  x = _normal(*x_shape)
  kernel = 0.05 * _normal(size, size, x_shape[-1], features, seed=2)
  calls, x_dev, kernel_dev = {}, *jax.device_put((x, kernel))
  for lowering in ("xla", "im2col"):
    def vjp(x, kernel, lowering=lowering):
      y, pull = jax.vjp(functools.partial(
          cpu_conv.conv, strides=strides, padding=padding, dilation=dilation,
          lowering=lowering), x, kernel)
      return y, pull(jnp.ones_like(y))
    compiled = jax.jit(vjp).lower(x_dev, kernel_dev).compile()
    calls[f"jax {lowering}"] = functools.partial(compiled, x_dev, kernel_dev)
  if torch is not None:
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    wt = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    wt.requires_grad_()
    pad = padding if isinstance(padding, int) else (
        0 if padding == "VALID" else dilation * (size - 1) // 2)

    def torch_call():
      xt.grad = wt.grad = None
      y = tf.conv2d(xt, wt, stride=strides, padding=pad, dilation=dilation)
      y.backward(torch.ones_like(y))
      return wt.grad
    calls["torch"] = torch_call
  return calls


# Running and reporting.


def _batch(row):
  return _RESNET_BATCH.value if row == "resnet18" else _BATCH.value


def _unit(row):
  return "images/s" if row == "resnet18" else "groups/s"


def time_row(row, repeats, tries=False):
  """`{side: Timing}` of one row's step: "jax", the tries, "torch"."""
  builders = {"lenet5": (jax_lenet5, torch_lenet5),
              "encoder": (jax_encoder, torch_encoder),
              "resnet18": (jax_resnet18, torch_resnet18)}[row]
  calls = {"jax": builders[0](_batch(row))}
  if tries:
    calls.update(_tries(row, _batch(row)))
  if torch is not None:
    calls["torch"] = builders[1](_batch(row))
  return timing.time_alternating(calls, repeats)


def result_row(row, batch, unit, measured) -> dict:
  out = {"row": row, "batch": batch, "unit": unit, "sides": {}}
  for name, t in measured.items():
    out["sides"][name] = {"ms": 1e3 * t.median_s, "min_ms": 1e3 * t.min_s,
                          "max_ms": 1e3 * t.max_s,
                          "per_s": batch / t.median_s}
    if "torch" in measured:
      out["sides"][name]["over_torch"] = (t.median_s /
                                          measured["torch"].median_s)
  return out


def markdown(results) -> str:
  m = results["machine"]
  torch_note = (f"torch {results['torch']} ({results['torch_threads']} "
                "threads)" if results["torch"] else "torch not installed")
  lines = [f"{m['cpus']} CPUs, jax {m['jax']}, {torch_note}, {m['utc']}; "
           f"load average "
           f"{_load(m['loadavg_start'])} at the start, "
           f"{_load(m['loadavg_end'])} at the end; median of "
           f"{results['repeats']} alternating calls.", "",
           "| row | batch | side | ms/step (min-max) | per s | time / torch |",
           "|---|---|---|---|---|---|"]
  for r in results["rows"]:
    for name, t in r["sides"].items():
      ratio = f"{t['over_torch']:.2f}" if "over_torch" in t else "-"
      lines.append(f"| {r['row']} | {r['batch']} | {name} | {_ms(t)} | "
                   f"{t['per_s']:,.1f} {r['unit']} | {ratio} |")
  return "\n".join(lines) + "\n"


def _ms(t):
  return f"{t['ms']:,.1f} ({t['min_ms']:,.1f}-{t['max_ms']:,.1f})"


def _load(loadavg):
  return "/".join(f"{v:.1f}" for v in loadavg)


def main(argv):
  del argv
  unknown = set(_ROWS.value) - set(ROWS)
  if unknown:
    raise ValueError(f"unknown rows {sorted(unknown)}; rows: {ROWS}")
  threads = _THREADS.value or os.cpu_count()
  if torch is None:
    print("torch is not installed: timing the JAX side only "
          "(pip install torch to compare).")
  else:
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__} on {threads} threads; JAX's CPU "
          f"backend on {os.cpu_count()} CPUs.")
  results = {"machine": timing.machine(), "repeats": _REPEATS.value,
             "torch": torch.__version__ if torch else None,
             "torch_threads": threads if torch else None, "rows": []}
  for row in LAYERS if _LAYERS.value else _ROWS.value:
    began = time.perf_counter()
    if _LAYERS.value:
      measured = timing.time_alternating(layer_calls(*LAYERS[row]),
                                         _REPEATS.value)
      out = result_row(row, LAYERS[row][0][0], "images/s", measured)
    else:
      out = result_row(row, _batch(row), _unit(row),
                       time_row(row, _REPEATS.value, _TRIES.value))
    results["rows"].append(out)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    print(f"{row}: {json.dumps(out)} ({time.perf_counter() - began:.0f} s)",
          flush=True)
    _write(results, "conv_layers" if _LAYERS.value else "conv_vs_torch")
  print(markdown(results))


def _write(results, name):
  """`<name>.json` and `<name>.md` under `--out` (after every row)."""
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, f"{name}.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(_OUT.value, f"{name}.md"), "w") as f:
    f.write(markdown(results))


if __name__ == "__main__":
  app.run(main)
