"""The `Code` contract across codes: the systematic field and constants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import codes
from jaxcc import erasures

K, R = 4, 2
CODES = {
    "summation": lambda: codes.summation(K),
    "linear": lambda: codes.linear(K, R),
    "berrut": lambda: codes.berrut(K, R),
    "approxifer": lambda: codes.berrut(K, R, systematic=False),
    "spline": lambda: codes.spline(K, R),
}


def test_systematic_field():
  assert codes.linear(3, 2).systematic
  assert codes.concatenation(2).systematic
  assert codes.learned(2, 1).systematic
  assert codes.berrut(3, 1).systematic
  assert not codes.berrut(3, 1, systematic=False).systematic
  assert not codes.spline(3, 1).systematic


@pytest.mark.parametrize("name", sorted(CODES))
def test_constant_queries_through_identity_are_reproduced(name):
  code = CODES[name]()
  c = np.random.default_rng(0).normal(size=(2, 1, 3))
  x = jnp.asarray(np.broadcast_to(c, (2, code.k, 3)), jnp.float32)
  coded = code.encode({}, x)
  y = jnp.concatenate([x, coded], axis=1) if code.systematic else coded
  masks = erasures.decoding_patterns(code.k, code.r, code.systematic,
                                     missing=range(1, code.r + 1))
  out = jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
      {}, y, jnp.asarray(masks))
  np.testing.assert_allclose(out, np.broadcast_to(c, out.shape), atol=1e-4)
