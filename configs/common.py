"""Shared defaults and the `file.py:key=value,...` argument parser.

Defaults follow the paper (Adam 1e-3, L2 1e-5, 64 groups per minibatch) and
are sized for the embedded default dataset, so the bare config finishes in a
minute or two on a laptop CPU. The paper-budget runs pass `epochs=...`.
"""

import ml_collections
from ml_collections import config_dict

# Short names accepted in the `:key=value` argument string.
_ALIASES = {
    "base_epochs": "base.epochs",
    "epochs": "parity.epochs",
    "batch_size": "parity.batch_size",
    "target": "parity.target",
    "init": "parity.init",
    "parity_loss": "parity.loss",
    "temperature": "parity.temperature",
    "width": "parity.width",
    "schedule": "parity.schedule",
    "warmup_epochs": "parity.warmup_epochs",
    "encoder": "learned.encoder",
    "loss": "learned.loss",
    "patterns": "learned.patterns",
    "decoder_width": "learned.decoder_width",
}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = "embedded"  # embedded | digits-localization | npz:<dir> | tfds
  c.data_dir = ""  # tfds data_dir ("" = tfds default)
  c.validation_size = config_dict.placeholder(int)  # None: 5,000 or 10%
  c.image_size = 0  # resize images to a square of this side (0: keep)
  c.model = "mlp"  # mlp | lenet5 | vgg11 | resnet18 | resnet152
  # summation | linear | concatenation | learned | berrut | spline
  c.code = "summation"
  c.k = 2
  c.r = 1
  c.generator = "random"  # linear code coefficients: random | vandermonde
  c.data_seed = 0  # validation (and held-out test) split
  c.seed = 0  # initialisation and the order of training examples
  c.test_group_seed = 0
  c.eval_missing = config_dict.placeholder(int)  # None: exactly r missing
  c.base_workdir = ""  # reuse F trained in another workdir ("" = this one)
  # Start from a trained F instead of training it: a directory written by
  # orbax.checkpoint.StandardCheckpointer().save(dir, variables), the flax
  # variables of `model` ("params", and "batch_stats" with BatchNorm)
  c.base_checkpoint = ""
  c.mixed_precision = False  # bf16 compute, f32 master weights
  c.eval_every = 1  # epochs between validation metrics
  # auto | scan (one lax.scan per epoch) | steps (a loop of jitted steps);
  # auto: steps on the CPU for models or codes with convolutions, else scan
  c.epoch_loop = "auto"
  # memory (the training set on the device) | stream (batches gathered on
  # the host, jaxcc.pipeline) | auto: stream when the training arrays exceed
  # max_device_bytes; both train on the same batches
  c.input_pipeline = "auto"
  c.max_device_bytes = 2 * 1024**3
  c.checkpoint_every_secs = 30.0  # between checkpoints at epoch ends
  # Also save every this many steps inside an epoch, and resume from there
  # (0: at epoch ends only); for epochs long enough to lose to a kill
  c.checkpoint_every_steps = 0

  c.base = ml_collections.ConfigDict()
  c.base.epochs = 15
  c.base.batch_size = 64
  c.base.learning_rate = 1e-3
  c.base.weight_decay = 1e-5

  c.parity = ml_collections.ConfigDict()  # stage 2: parity models or code
  c.parity.epochs = 40
  c.parity.batch_size = 64  # coding groups per minibatch
  c.parity.learning_rate = 1e-3
  c.parity.weight_decay = 1e-5
  c.parity.target = "base"  # base: sum of F's outputs | label: one-hot sum
  c.parity.init = "scratch"  # scratch | base (start from F's weights)
  # mse: MSE toward code.parity_target (the paper); decoded-mse | decoded-kl
  # | decoded-xent-top1 | decoded-xent-label: decode every erasure pattern as
  # at test time and train on the reconstructions against F's outputs (KL
  # of softmaxes at `temperature`, CE to F's top-1) or the true label
  c.parity.loss = "mse"
  c.parity.temperature = 1.0  # parity.loss=decoded-kl only
  c.parity.width = 1.0  # parity model = F's architecture this times wider
  # Learning rate of stage 2 (parity models and learned codes): constant, or
  # cosine (linear warm-up over warmup_epochs, cosine decay to 0 at the end)
  c.parity.schedule = "constant"
  c.parity.warmup_epochs = 0

  c.learned = ml_collections.ConfigDict()
  c.learned.encoder = "mlp"  # mlp | conv
  c.learned.loss = "mse-base"  # mse-base | kl-base | xent-label
  # How a minibatch's erasure patterns' losses combine: mean (the paper) |
  # worst (the largest; keeps the encoder from serving some patterns only)
  c.learned.patterns = "mean"
  # The decoder's hidden layers are this many times k * (F's outputs) wide
  # (1: the paper's decoder)
  c.learned.decoder_width = 1

  c.berrut = ml_collections.ConfigDict()  # code=berrut (training-free)
  # True: the k inputs go unchanged to k workers, r parities; False:
  # ApproxIFER's code, all k + r workers on coded queries, all k predictions
  # decoded
  c.berrut.systematic = True

  c.spline = ml_collections.ConfigDict()  # code=spline (training-free)
  # True: choose both lambdas on the validation split at evaluation (every
  # pair of codes' LAMBDA_GRID, the pair whose decoded predictions agree
  # most with F's own on validation); False: use these
  c.spline.search = True
  c.spline.lambda_encoder = 1e-4
  c.spline.lambda_decoder = 1e-4
  return c


def apply_args(config, arg: str):
  """Applies `key=value,key=value` overrides, typed like the defaults."""
  if not arg:
    return config
  for item in arg.split(","):
    if "=" not in item:
      raise ValueError(f"config argument {item!r} is not key=value")
    key, value = item.split("=", 1)
    key = _ALIASES.get(key.strip(), key.strip())
    node, *path = key.split(".")
    parent = config
    for part in [node] + path[:-1] if path else []:
      parent = parent[part]
    leaf = path[-1] if path else node
    if leaf not in parent:
      raise ValueError(f"unknown config field {key!r}")
    parent[leaf] = _parse(value, parent[leaf])
  return config


def _parse(value: str, default):
  if isinstance(default, bool):
    if value.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"expected a boolean, got {value!r}")
    return value.lower() in ("true", "1")
  for kind in (int, float):
    if isinstance(default, kind):
      return kind(value)
  if default is None:
    return int(value) if value.lstrip("-").isdigit() else value
  return value
