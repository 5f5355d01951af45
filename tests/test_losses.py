"""Reconstruction losses: hand-computed values, erased slots only."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import erasures
from jaxcc import losses

M = 10  # classes


def test_mse_base_hand_computed():
  recon = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, K=2, C=2)
  base = jnp.array([[[0.0, 0.0], [3.0, 2.0]]])
  assert np.isclose(losses.mse_base(recon, base, np.array([False, True])),
                    (0.0 + 4.0) / 2)
  assert np.isclose(losses.mse_base(recon, base, np.array([True, False])),
                    (1.0 + 4.0) / 2)
  assert np.isclose(losses.mse_base(recon, base, np.array([True, True])),
                    (2.5 + 2.0) / 2)
  assert losses.mse_base(recon, base, np.array([False, False])) == 0.0
  assert np.isclose(losses.mse(recon, base), (1 + 4 + 0 + 4) / 4)


def test_kl_base_hand_computed():
  recon = jnp.array([[[0.0, 0.0], [0.0, math.log(3.0)]]])
  base = jnp.array([[[0.0, 0.0], [0.0, 0.0]]])
  # p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 log 2 + 1/2 log(2/3).
  expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
  assert np.isclose(losses.kl_base(recon, base, np.array([False, True])),
                    expected, atol=1e-6)
  assert np.isclose(losses.kl_base(recon, base, np.array([True, False])), 0.0,
                    atol=1e-7)


def test_xent_label_hand_computed():
  recon = jnp.array([[[0.0, math.log(3.0)], [5.0, 5.0]]])
  labels = jnp.array([[1, 0]])
  assert np.isclose(losses.xent_label(recon, labels, np.array([True, False])),
                    -math.log(0.75), atol=1e-6)
  assert np.isclose(losses.xent_label(recon, labels, np.array([True, True])),
                    (-math.log(0.75) + math.log(2.0)) / 2, atol=1e-6)


@pytest.mark.parametrize("name", ["mse-base", "kl-base", "xent-label"])
def test_losses_only_count_erased_slots(name):
  loss = jax.jit(losses.get(name))
  recon = jax.random.normal(jax.random.PRNGKey(0), (4, 3, M))
  if name == "xent-label":
    target = jax.random.randint(jax.random.PRNGKey(1), (4, 3), 0, M)
  else:
    target = jax.random.normal(jax.random.PRNGKey(1), (4, 3, M))
  erased = np.array([False, True, False])
  value = loss(recon, target, erased)
  assert value > 0
  for changed in (recon.at[:, 0].add(7.0), recon.at[:, 2].set(jnp.nan)):
    assert loss(changed, target, erased) == value
  grad = jax.grad(loss)(recon.at[:, 2].set(jnp.nan), target, erased)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[:, [0, 2]], 0.0)
  assert loss(recon.at[:, 1, 0].add(1.0), target, erased) != value
  # A traced mask works under vmap over patterns.
  masks = ~erasures.patterns(3, 1)[:, :3]
  per_pattern = jax.vmap(loss, in_axes=(None, None, 0))(recon, target, masks)
  np.testing.assert_allclose(per_pattern[1], value, rtol=1e-6)


def test_get_unknown_loss():
  assert losses.get("mse-base") is losses.mse_base
  assert set(losses.LOSSES) == {"mse-base", "kl-base", "xent-label"}
  with pytest.raises(ValueError, match="unknown loss 'l1'.*kl-base"):
    losses.get("l1")
