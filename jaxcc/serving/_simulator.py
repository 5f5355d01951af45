"""Cluster-scale simulation: the real frontend and pools on a virtual clock.

A discrete-event simulation in which the asyncio event loop is the
simulator: its timer heap is the event queue, and a selector that never
waits advances the clock straight to the next timer. The frontend, the
shared-queue pools and the fault injection are the same code as in the real
system; only the model instances are simulated, with service times drawn
from measured latencies of the real model. Deterministic under a seed.
"""

import asyncio
import selectors

import numpy as np


class _Clock(selectors.BaseSelector):
  """A selector with no I/O: `select(timeout)` moves time forward."""

  def __init__(self):
    self.now = 0.0
    self._keys = {}

  def register(self, fileobj, events, data=None):
    fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
    key = selectors.SelectorKey(fileobj, fd, events, data)
    self._keys[fd] = key
    return key

  def unregister(self, fileobj):
    return self._keys.pop(
        fileobj if isinstance(fileobj, int) else fileobj.fileno())

  def select(self, timeout=None):
    if timeout is None:
      raise RuntimeError("simulation stalled: nothing is scheduled")
    self.now += timeout
    return []

  def close(self):
    self._keys.clear()

  def get_map(self):
    return self._keys


class VirtualTimeLoop(asyncio.SelectorEventLoop):
  """An event loop whose `time()` is simulated: sleeping costs nothing."""

  def __init__(self):
    self._clock = _Clock()
    super().__init__(self._clock)

  def time(self):
    return self._clock.now


class SimInstance:
  """A simulated model instance: serves one request at a time.

  Args:
    service_s: measured service times (seconds) to draw from.
    rng: a `np.random.Generator`.
    num_outputs: C of the (all-zero) outputs it returns.
  """
  alive = True

  def __init__(self, service_s, rng, num_outputs: int = 1):
    self._service_s = np.asarray(service_s, float)
    self._rng = rng
    self._num_outputs = num_outputs
    self._free_at = 0.0

  def call(self, x_B, delay_s: float) -> asyncio.Future:
    loop = asyncio.get_running_loop()
    self._free_at = (max(loop.time(), self._free_at) + delay_s
                     + self._rng.choice(self._service_s))
    future = loop.create_future()
    loop.call_at(self._free_at, future.set_result,
                 np.zeros((len(x_B), self._num_outputs), np.float32))
    return future


def simulate(main):
  """Runs the coroutine `main` to completion in virtual time."""
  loop = VirtualTimeLoop()
  try:
    return loop.run_until_complete(main)
  finally:
    loop.close()
