"""Test settings: CPU only, strict dtype promotion, quiet logs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_numpy_dtype_promotion", "strict")
