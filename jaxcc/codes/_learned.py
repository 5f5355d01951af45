"""Learned erasure codes: a neural encoder and decoder (paper §IV).

The encoder maps the K data inputs of a group to R parity inputs; the K+R
outputs of the frozen function F go to the decoder, which rebuilds missing
data outputs. Both are trained together by backpropagating through F (see
`jaxcc.losses` for the losses).

Encoders (paper Table I), over images shaped (H, W) or (H, W, C):
  "mlp": flatten each input, concatenate, FC KHW -> KHW, ReLU, FC KHW -> RHW.
  "conv": the K inputs as K channels; 3x3 convs with dilations
    1, 1, 2, 4, 8, 1 (20K channels, stride 1, SAME padding), then a 1x1 conv
    to R channels; ReLU after all but the last layer.
Colour inputs are encoded one colour channel at a time with the same encoder
(C is folded into the batch) and the parities restacked to (B, R, H, W, C).

Decoder (paper Table II): the K+R outputs, each flattened to M values and
zeroed where unavailable, concatenated; FC (K+R)M -> KM, ReLU, FC KM -> KM,
ReLU, FC KM -> KM; reshaped to (B, K, *output_shape). No softmax. Arrived data
outputs are passed through unchanged. `decoder_width` multiplies the two hidden
layers' KM units (1: the paper's decoder).

Params are plain pytrees of float32 arrays:
`{"encoder": {layer: {"kernel", "bias"}}, "decoder": {layer: {...}}}`.
Init: conv kernels Xavier uniform, FC kernels N(0, 0.01^2), biases 0.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import erasures
from jaxcc.codes import _code

ENCODERS = ("mlp", "conv")
CONV_DILATIONS = (1, 1, 2, 4, 8, 1)
CONV_WIDTH_PER_INPUT = 20
FC_INIT_STD = 0.01


def learned(k: int, r: int = 1, encoder: str = "mlp",
            decoder_width: int = 1) -> _code.Code:
  """A learned code with a neural encoder and an MLP decoder.

  Args:
    k: data inputs per group (>= 1).
    r: parities per group (>= 1).
    encoder: "mlp" (MLPEncoder) or "conv" (ConvEncoder).
    decoder_width: the decoder's hidden layers have decoder_width * k * m
      units, m the size of one output of F (integer >= 1; 1: the paper's).

  Returns:
    A `Code` whose `init(key, input_shape, output_shape)` takes the shape of
    one input image, (H, W) or (H, W, C), and of one output of F. The MLP
    encoder only takes images of the size it was initialised for (encode
    raises otherwise); the conv encoder takes any H and W, and neither
    depends on C (colour channels share the encoder). The decoder checks
    that (k+r) * prod(output_shape) matches its first layer.
  """
  erasures.check_k_r(k, r)
  if r < 1:
    raise ValueError(f"a learned code needs r >= 1 parities, got r={r}")
  if encoder not in ENCODERS:
    raise ValueError(f"unknown encoder {encoder!r}; known encoders: "
                     f"{', '.join(ENCODERS)}")
  if (isinstance(decoder_width, bool)
      or not isinstance(decoder_width, (int, np.integer)) or decoder_width < 1):
    raise ValueError("decoder_width must be an integer >= 1, got "
                     f"{decoder_width!r}")
  decoder_width = int(decoder_width)

  def init(key, input_shape, output_shape):
    height, width = _image_size(input_shape)
    m = math.prod(_output_shape(output_shape))
    pixels = height * width if encoder == "mlp" else 0  # conv: any size
    return _init_params(key, k, r, encoder, pixels, m, decoder_width)

  def encode(params, x_BK):
    return _encode(params["encoder"], x_BK, k, r, encoder)

  def decode(params, y_BN, available_N):
    return _decode(params["decoder"], y_BN, available_N, k, r)

  width = "" if decoder_width == 1 else f", decoder_width={decoder_width}"
  return _code.make_code(
      k, r, f"learned(k={k}, r={r}, encoder={encoder!r}{width})", init,
      encode, decode)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _init_params(key, k, r, encoder, pixels, m, decoder_width):
  """All parameters; one normal and one uniform draw for the whole tree.

  Drawing per layer would put a separate RNG program per layer into the
  compiled init, which takes seconds to compile on CPU.
  """
  if encoder == "mlp":
    enc = _mlp_encoder_shapes(k, r, pixels)
  else:
    enc = _conv_encoder_shapes(k, r)
  shapes = {"encoder": enc,
            "decoder": _decoder_shapes(k, r, m, decoder_width)}
  kernels = {path: shape for path, shape in _kernel_paths(shapes)}
  fc = [p for p, shape in kernels.items() if len(shape) == 2]
  conv = [p for p, shape in kernels.items() if len(shape) == 4]
  normal_key, uniform_key = jax.random.split(key)
  normal = jax.random.normal(
      normal_key, (sum(math.prod(kernels[p]) for p in fc),), jnp.float32)
  uniform = jax.random.uniform(
      uniform_key, (sum(math.prod(kernels[p]) for p in conv),), jnp.float32,
      -1.0, 1.0)
  values = {}
  for paths, flat, scale in ((fc, normal, _fc_scale),
                             (conv, uniform, _xavier_bound)):
    start = 0
    for path in paths:
      shape = kernels[path]
      size = math.prod(shape)
      values[path] = scale(shape) * flat[start:start + size].reshape(shape)
      start += size
  return {part: {name: {"kernel": values[(part, name)],
                        "bias": jnp.zeros(layer["bias"], jnp.float32)}
                 for name, layer in layers.items()}
          for part, layers in shapes.items()}


def _kernel_paths(shapes):
  for part, layers in shapes.items():
    for name, layer in layers.items():
      yield (part, name), layer["kernel"]


def _fc_scale(shape):
  del shape
  return FC_INIT_STD


def _xavier_bound(shape_HWIO):
  """Glorot & Bengio's uniform bound sqrt(6 / (fan_in + fan_out))."""
  h, w, c_in, c_out = shape_HWIO
  return math.sqrt(6.0 / (h * w * (c_in + c_out)))


def _image_size(input_shape):
  """(H, W) of an image shape (H, W) or (H, W, C); raises otherwise."""
  shape = tuple(input_shape) if np.ndim(input_shape) else (input_shape,)
  if (len(shape) not in (2, 3)
      or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape)):
    raise ValueError(
        "learned encoders take images: input_shape must be (H, W) or "
        f"(H, W, C) with positive integer sizes; got {input_shape!r}")
  return int(shape[0]), int(shape[1])


def _output_shape(output_shape):
  shape = (tuple(output_shape) if np.ndim(output_shape)
           else (output_shape,))
  if not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
    raise ValueError("output_shape must be positive integer sizes; got "
                     f"{output_shape!r}")
  return tuple(int(d) for d in shape)


def _dense_shapes(n_in, n_out):
  return {"kernel": (n_in, n_out), "bias": (n_out,)}


def _conv_shapes(size, c_in, c_out):
  return {"kernel": (size, size, c_in, c_out), "bias": (c_out,)}


def _mlp_encoder_shapes(k, r, pixels):
  return {"fc_0": _dense_shapes(k * pixels, k * pixels),
          "fc_1": _dense_shapes(k * pixels, r * pixels)}


def _conv_encoder_shapes(k, r):
  width = CONV_WIDTH_PER_INPUT * k
  layers = {}
  c_in = k
  for i in range(len(CONV_DILATIONS)):
    layers[f"conv_{i}"] = _conv_shapes(3, c_in, width)
    c_in = width
  layers[f"conv_{len(CONV_DILATIONS)}"] = _conv_shapes(1, width, r)
  return layers


def _decoder_shapes(k, r, m, width):
  hidden = width * k * m
  return {"fc_0": _dense_shapes((k + r) * m, hidden),
          "fc_1": _dense_shapes(hidden, hidden),
          "fc_2": _dense_shapes(hidden, k * m)}


def _dense(layer, x):
  bias = layer["bias"]
  return x @ layer["kernel"] + bias.reshape((1,) * (x.ndim - 1) + bias.shape)


def _encode(enc, x_BK, k, r, encoder):
  """Folds colour channels into the batch and encodes each plane."""
  shape = jnp.shape(x_BK)
  if len(shape) not in (4, 5):
    raise ValueError(
        "learned encoders take images shaped (batch, k, H, W) or "
        f"(batch, k, H, W, C); got shape {shape}")
  x_BK = jnp.asarray(x_BK, jnp.float32)
  if len(shape) == 4:
    return _encode_planes(enc, x_BK, k, r, encoder)
  b, _, h, w, c = shape
  x_bK = jnp.moveaxis(x_BK, -1, 1).reshape(b * c, k, h, w)
  p_bR = _encode_planes(enc, x_bK, k, r, encoder)
  return jnp.moveaxis(p_bR.reshape(b, c, r, h, w), 1, -1)


def _encode_planes(enc, x_BKHW, k, r, encoder):
  """Single-channel inputs (B, K, H, W) -> parities (B, R, H, W)."""
  b, _, h, w = x_BKHW.shape
  if encoder == "mlp":
    expected = enc["fc_0"]["kernel"].shape[0]
    if k * h * w != expected:
      raise ValueError(
          f"input images of size {h}x{w} do not match the MLP encoder, which "
          f"was initialised for k*H*W = {expected} values (k={k}); "
          "re-init the code for this input shape")
    hidden = jax.nn.relu(_dense(enc["fc_0"], x_BKHW.reshape(b, k * h * w)))
    return _dense(enc["fc_1"], hidden).reshape(b, r, h, w)
  first = enc["conv_0"]["kernel"]
  if first.shape[2] != k:
    raise ValueError(f"the conv encoder was initialised for {first.shape[2]} "
                     f"input channels, but k={k}")
  z_BHWC = jnp.transpose(x_BKHW, (0, 2, 3, 1))
  n_layers = len(CONV_DILATIONS) + 1
  for i in range(n_layers):
    layer = enc[f"conv_{i}"]
    dilation = CONV_DILATIONS[i] if i < len(CONV_DILATIONS) else 1
    z_BHWC = jax.lax.conv_general_dilated(
        z_BHWC, layer["kernel"], window_strides=(1, 1), padding="SAME",
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    z_BHWC = z_BHWC + layer["bias"].reshape(1, 1, 1, -1)
    if i < n_layers - 1:
      z_BHWC = jax.nn.relu(z_BHWC)
  return jnp.transpose(z_BHWC, (0, 3, 1, 2))


def _decode(dec, y_BN, available_N, k, r):
  """Zeroes unavailable outputs, runs the MLP, passes arrived data through."""
  y_BN = jnp.asarray(y_BN)
  b, n = y_BN.shape[:2]
  out_shape = y_BN.shape[2:]
  m = math.prod(out_shape)
  expected = dec["fc_0"]["kernel"].shape[0]
  if n * m != expected:
    raise ValueError(
        f"outputs of shape {out_shape} ({m} values each) do not match the "
        f"decoder, which was initialised for (k+r)*m = {expected} values "
        f"(k={k}, r={r})")
  keep_N = available_N.reshape((1, n) + (1,) * len(out_shape))
  z_BNM = jnp.where(keep_N, y_BN.astype(jnp.float32), 0.0)
  hidden = jax.nn.relu(_dense(dec["fc_0"], z_BNM.reshape(b, n * m)))
  hidden = jax.nn.relu(_dense(dec["fc_1"], hidden))
  recon_BK = _dense(dec["fc_2"], hidden).reshape((b, k) + out_shape)
  return _code.pass_through_available(y_BN, recon_BK, available_N, k)
