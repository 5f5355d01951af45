"""Tests run on the CPU."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
