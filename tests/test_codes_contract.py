"""The `Code` contract across codes: the systematic field, constants, and a
linear code's maps."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import codes
from jaxcc import erasures
from jaxcc.codes import _code

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


LINEAR = dict(CODES, **{
    "berrut-k2-r2": lambda: codes.berrut(2, 2),  # Shares a node with data.
    "approxifer-k2-r2": lambda: codes.berrut(2, 2, systematic=False),
    "linear-vandermonde": lambda: codes.linear(3, 2, "vandermonde"),
})


def all_patterns(k, r) -> np.ndarray:
  """Every `(k+r,)` mask with at most r outputs missing."""
  return np.array([p for p in itertools.product([True, False], repeat=k + r)
                   if p.count(False) <= r])


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_maps_equal_encode_and_decode_for_every_pattern(name):
  code = LINEAR[name]()
  n = code.k + code.r
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, code.k, 4, 2)).astype(np.float32)
  np.testing.assert_allclose(
      np.einsum("mk,bk...->bm...", code.maps.encoding_MK, x),
      code.encode({}, x), atol=1e-5)
  y = rng.normal(size=(3, n, 5)).astype(np.float32)
  masks = all_patterns(code.k, code.r)
  decoded = jax.vmap(code.decode, in_axes=(None, None, 0))({}, y, masks)
  for available_N, want in zip(masks, decoded):
    d_KN = code.maps.decoding(available_N)
    np.testing.assert_array_equal(d_KN[:, ~available_N], 0.0)
    np.testing.assert_allclose(np.einsum("kn,bn...->bk...", d_KN, y), want,
                               atol=2e-5)


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_a_code_with_maps_is_a_static_argument_and_a_cache_key(name):
  code = LINEAR[name]()
  assert code == code and hash(code) == hash(code)
  decode = jax.jit(lambda c, y, a: c.decode({}, y, a), static_argnums=0)
  y = np.ones((1, code.k + code.r, 3), np.float32)
  decode(code, y, np.ones(code.k + code.r, bool))


def test_codes_that_are_not_linear_have_no_maps():
  assert codes.learned(2, 1).maps is None
  assert codes.concatenation(2).maps is None
  assert codes.summation(2).maps is not None


def test_systematic_decoding_passes_arrived_data_through():
  d_KN = codes.linear(3, 2).maps.decoding(np.array([1, 0, 1, 0, 1], bool))
  np.testing.assert_array_equal(d_KN[[0, 2]], np.eye(3, 5)[[0, 2]])


def test_make_code_zeroes_missing_columns_and_passes_data_through():
  code = _code.make_code(2, 1, "ones", _code.no_params, lambda p, x: x,
                         lambda p, y, a: y, encoding_MK=np.ones((1, 2)),
                         decoding=lambda a: np.ones((2, 3)))
  np.testing.assert_array_equal(
      code.maps.decoding(np.array([1, 0, 1], bool)), [[1, 0, 0], [1, 0, 1]])


def test_bad_maps_and_patterns_are_refused():
  with pytest.raises(ValueError, match=r"encoding_MK must have shape \(1, 2\)"):
    _code.make_code(2, 1, "bad", _code.no_params, lambda p, x: x,
                    lambda p, y, a: y, encoding_MK=np.ones((2, 2)),
                    decoding=lambda a: np.zeros((2, 3)))
  with pytest.raises(ValueError, match="at most 1"):
    codes.summation(2).maps.decoding(np.array([0, 0, 1], bool))
