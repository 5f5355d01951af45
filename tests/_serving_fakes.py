"""In-process stand-ins shared by the serving tests (not a test module)."""

import asyncio
import io

import numpy as np

W = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)


class Instance:
  """A model instance answering `flatten(x) @ W` after `service_s`."""
  alive = True

  def __init__(self, service_s: float = 1e-3):
    self.service_s = service_s

  def call(self, x_B, delay_s):
    del delay_s  # No faults injected into these.
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_later(self.service_s, future.set_result,
                    x_B.reshape(len(x_B), -1) @ W)
    return future


def npy(array) -> bytes:
  """`array` as a .npy request body."""
  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()
