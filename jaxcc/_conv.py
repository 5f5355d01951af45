"""2-D convolutions lowered for XLA's CPU backend: im2col where it is faster.

XLA's CPU convolution is slow for convs with very few input channels and for
1x1 kernels. `conv` computes those as im2col: the kh * kw shifted windows of
the padded input side by side, times the kernel in one matmul, whose
gradients are a matmul (kernel) and pads and adds (input). Measured alone
(`benchmarks/conv_vs_torch.py --layers`, docs/BENCHMARKS.md), forward plus
both gradients: LeNet-5's 5x5 conv of 1 channel to 6, the conv encoder's
first layer (2 channels to 40) and its final 1x1 conv, and ResNet's strided
1x1 shortcut got faster; convs of 3 or more input channels (ResNet's stem,
LeNet-5's second conv, the 40-channel encoder layers) got slower, so they
keep XLA's convolution. `lowering="auto"` takes im2col for 1x1 kernels and
for at most `IM2COL_MAX_IN_FEATURES` input channels.

Layouts are NHWC inputs, HWIO kernels and NHWC outputs, as `flax.linen.Conv`.
`Conv` is a drop-in `flax.linen.Conv` (same parameter names, shapes,
initialisation and numerics within float32 rounding) that uses `conv`.
"""

from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

IM2COL_MAX_IN_FEATURES = 2
LOWERINGS = ("auto", "xla", "im2col")

Padding = Union[str, int, Sequence[tuple]]


def conv(x_BHWC, kernel_HWIO, strides=(1, 1), padding: Padding = "SAME",
         dilation=(1, 1), lowering: str = "auto") -> jax.Array:
  """`lax.conv_general_dilated` in NHWC/HWIO/NHWC, lowered by `lowering`.

  Args:
    x_BHWC: inputs.
    kernel_HWIO: the kernel; its input features must equal C.
    strides: window strides (an int or a pair).
    padding: "SAME", "VALID", an int (both sides of both axes) or
      `((lo, hi), (lo, hi))`.
    dilation: kernel (atrous) dilation (an int or a pair).
    lowering: "xla" (`lax.conv_general_dilated`), "im2col", or "auto":
      im2col for 1x1 kernels (a matmul) and for at most
      `IM2COL_MAX_IN_FEATURES` input channels, else "xla".

  Returns:
    The outputs `(B, H', W', O)`.
  """
  if lowering not in LOWERINGS:
    raise ValueError(f"lowering must be one of {LOWERINGS}, got "
                     f"{lowering!r}")
  if x_BHWC.ndim != 4 or kernel_HWIO.ndim != 4:
    raise ValueError(f"conv takes (B, H, W, C) inputs and (H, W, I, O) "
                     f"kernels; got {x_BHWC.shape} and {kernel_HWIO.shape}")
  if x_BHWC.shape[-1] != kernel_HWIO.shape[2]:
    raise ValueError(f"inputs have {x_BHWC.shape[-1]} channels, the kernel "
                     f"takes {kernel_HWIO.shape[2]}")
  strides, dilation = _pair(strides), _pair(dilation)
  window = tuple((size - 1) * d + 1
                 for size, d in zip(kernel_HWIO.shape[:2], dilation))
  pads = _pads(padding, x_BHWC.shape[1:3], window, strides)
  if lowering == "auto":
    pointwise = kernel_HWIO.shape[:2] == (1, 1)
    lowering = ("im2col" if pointwise or
                x_BHWC.shape[-1] <= IM2COL_MAX_IN_FEATURES else "xla")
  if lowering == "xla":
    return jax.lax.conv_general_dilated(
        x_BHWC, kernel_HWIO, strides, pads, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return _im2col(x_BHWC, kernel_HWIO, strides, pads, dilation)


def _im2col(x_BHWC, kernel_HWIO, strides, pads, dilation):
  """The windows of every kernel tap side by side, times the kernel."""
  kh, kw, c_in, c_out = kernel_HWIO.shape
  x_BHWC = jnp.pad(x_BHWC, ((0, 0), *pads, (0, 0)))
  h, w = (x_BHWC.shape[1 + axis] - (size - 1) * dilation[axis]
          for axis, size in enumerate((kh, kw)))
  out_h, out_w = (-(-h // strides[0]), -(-w // strides[1]))
  taps = [jax.lax.slice(
      x_BHWC, (0, i * dilation[0], j * dilation[1], 0),
      (x_BHWC.shape[0], i * dilation[0] + (out_h - 1) * strides[0] + 1,
       j * dilation[1] + (out_w - 1) * strides[1] + 1, c_in),
      (1, strides[0], strides[1], 1))
          for i in range(kh) for j in range(kw)]
  patches_BHWT = jnp.concatenate(taps, axis=-1)  # T = kh * kw * C, HWI order
  return jax.lax.dot_general(
      patches_BHWT, kernel_HWIO.reshape(kh * kw * c_in, c_out),
      (((3,), (0,)), ((), ())))


def _pair(value):
  return (value, value) if isinstance(value, int) else tuple(value)


def _pads(padding, spatial, window, strides):
  if isinstance(padding, str):
    return tuple(jax.lax.padtype_to_pads(spatial, window, strides, padding))
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple(tuple(p) for p in padding)


class Conv(nn.Module):
  """`flax.linen.Conv` for NHWC inputs, computed by `conv`.

  Same fields (the ones jaxcc uses), parameters ("kernel" HWIO, "bias") and
  initialisation as `nn.Conv`, so variables load in either.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = "SAME"
  kernel_dilation: Union[int, Sequence[int]] = 1
  use_bias: bool = True
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  lowering: str = "auto"

  @nn.compact
  def __call__(self, x_BHWC):
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x_BHWC.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x_BHWC, kernel, bias = nn.dtypes.promote_dtype(x_BHWC, kernel, bias,
                                                   dtype=self.dtype)
    y_BHWO = conv(x_BHWC, kernel, self.strides, self.padding,
                  self.kernel_dilation, self.lowering)
    if bias is None:
      return y_BHWO
    return y_BHWO + bias.reshape(1, 1, 1, -1)

