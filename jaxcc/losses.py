"""Reconstruction losses for training learned codes (paper §IV-A).

Each loss is `(recon_BK..., target, erased_K) -> scalar` and averages only
over the erased (missing) data slots: `erased_K` is a boolean (k,) mask (or a
(B, k) one), True where data output j was unavailable and so reconstructed.
Values in slots that are not erased never reach the loss or its gradient,
even if they are NaN. With no erased slot the loss is 0.

Names as in the authors' repo:
  "mse-base": mean squared error to F's outputs.
  "kl-base": KL(softmax(F) || softmax(recon)) over the last (class) axis.
  "xent-label": softmax cross-entropy to the true integer labels.
`xent_top1` (cross-entropy to F's top-1 class) trains parity models only.

A learned code's minibatch loss combines the losses of its erasure patterns
(`PATTERN_REDUCTIONS`): their mean (the paper) or the worst pattern's, which
keeps an encoder from serving some patterns only (e.g. a conv encoder whose
parity copies one input: one pattern decodes well, the other not at all).
"""

import jax
import jax.numpy as jnp


def mse(pred, target) -> jax.Array:
  """Plain mean squared error over all elements."""
  return jnp.mean(jnp.square(pred - target))


def _slot_mask(erased_K, batch_shape):
  """The (B, K) erased mask and the number of erased (b, j) slots (>= 1)."""
  mask_BK = jnp.broadcast_to(jnp.asarray(erased_K, bool), batch_shape)
  count = jnp.maximum(jnp.sum(mask_BK), 1).astype(jnp.float32)
  return mask_BK, count


def _expand(mask_BK, ndim):
  return mask_BK.reshape(mask_BK.shape + (1,) * (ndim - 2))


def mse_base(recon_BK, base_BK, erased_K) -> jax.Array:
  """Squared error to F's outputs, mean over output elements and erased slots."""
  mask_BK, count = _slot_mask(erased_K, recon_BK.shape[:2])
  keep = _expand(mask_BK, recon_BK.ndim)
  diff = jnp.where(keep, recon_BK, 0.0) - jnp.where(keep, base_BK, 0.0)
  per_slot_BK = jnp.mean(jnp.square(diff).reshape(mask_BK.shape + (-1,)),
                         axis=-1)
  return jnp.sum(jnp.where(mask_BK, per_slot_BK, 0.0)) / count


def kl_base(recon_BKC, base_BKC, erased_K,
            temperature: float = 1.0) -> jax.Array:
  """KL(softmax(F) || softmax(recon)) summed over classes, mean over slots.

  With a `temperature` T, both softmaxes are of logits / T and the KL is
  scaled by T^2 (distillation's convention: gradients keep their size).
  """
  mask_BK, count = _slot_mask(erased_K, recon_BKC.shape[:2])
  keep = _expand(mask_BK, recon_BKC.ndim)
  log_q = jax.nn.log_softmax(
      jnp.where(keep, recon_BKC, 0.0) / temperature, axis=-1)
  log_p = jax.nn.log_softmax(
      jnp.where(keep, base_BKC, 0.0) / temperature, axis=-1)
  kl = temperature**2 * jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
  per_slot_BK = jnp.mean(kl.reshape(mask_BK.shape + (-1,)), axis=-1)
  return jnp.sum(jnp.where(mask_BK, per_slot_BK, 0.0)) / count


def xent_label(recon_BKC, labels_BK, erased_K) -> jax.Array:
  """Softmax cross-entropy to integer labels, mean over erased slots."""
  mask_BK, count = _slot_mask(erased_K, recon_BKC.shape[:2])
  keep = _expand(mask_BK, recon_BKC.ndim)
  log_q = jax.nn.log_softmax(jnp.where(keep, recon_BKC, 0.0), axis=-1)
  labels_BK = jnp.asarray(labels_BK, jnp.int32)
  nll_BK = -jnp.take_along_axis(log_q, labels_BK[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(mask_BK, nll_BK, 0.0)) / count


def xent_top1(recon_BKC, base_BKC, erased_K) -> jax.Array:
  """Softmax cross-entropy to F's top-1 class, mean over erased slots."""
  return xent_label(recon_BKC, jnp.argmax(base_BKC, axis=-1), erased_K)


LOSSES = {"mse-base": mse_base, "kl-base": kl_base, "xent-label": xent_label}


PATTERN_REDUCTIONS = {"mean": jnp.mean, "worst": jnp.max}


def pattern_reduction(name: str):
  """`(losses_P,) -> scalar` called `name`; raises `ValueError` otherwise."""
  if name not in PATTERN_REDUCTIONS:
    raise ValueError(f"unknown pattern reduction {name!r}; known: "
                     f"{', '.join(PATTERN_REDUCTIONS)}")
  return PATTERN_REDUCTIONS[name]


def get(name: str):
  """The loss called `name`; raises `ValueError` listing the known names."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; known losses: "
                     f"{', '.join(sorted(LOSSES))}")
  return LOSSES[name]
