"""A pool of model instances behind one shared queue (Clipper's policy).

An *instance* has `alive` and `call(x_B..., delay_s, drop) -> Future` of
`y_BC`: it waits `delay_s` (injected slowdown), computes, and never answers
when `drop` is set; its future fails with `InstanceFailed` when it dies.
Requests wait in one FIFO queue and go to whichever live instance is idle;
a request withdrawn (cancelled) while queued is skipped, one cancelled in
service is computed and ignored.
"""

import asyncio
import collections
from typing import Optional

from jaxcc.serving import _faults


class InstanceFailed(RuntimeError):
  """An instance died, or its response did not come back in time."""


class SharedQueuePool:
  """Model instances served from a single shared queue.

  Args:
    instances: the instances, one per slot.
    injector: draws the slowdown and drop of each request (None: no faults).
    rpc_timeout_s: a request whose response has not come back by then fails,
      and its instance takes the next request (it was dropped). None: wait.
  """

  def __init__(self, instances, *,
               injector: Optional[_faults.Injector] = None,
               rpc_timeout_s: Optional[float] = None):
    self.instances = list(instances)
    self._injector = injector
    self._rpc_timeout_s = rpc_timeout_s
    self._waiting = collections.deque()  # (x, future)
    self._idle = collections.deque(range(len(self.instances)))
    self._token = [0] * len(self.instances)  # current dispatch of each slot
    self.service_s = []  # dispatch-to-reply time of every answered request

  def submit(self, x_B) -> asyncio.Future:
    """Queues a request; the future resolves to the instance's output."""
    future = asyncio.get_running_loop().create_future()
    self._waiting.append((x_B, future))
    self._dispatch()
    return future

  def begin_faults(self, t0: float, horizon_s: float) -> None:
    """Starts injecting faults, with times counted from loop time `t0`."""
    del horizon_s  # Only pools that schedule crashes need it.
    if self._injector is not None:
      self._injector.start(t0)

  async def close(self) -> None:
    """Stops the instances (simulated ones need nothing)."""

  def replace(self, slot: int, instance) -> None:
    """Puts a (restarted) instance into `slot` and gives it work."""
    self.instances[slot] = instance
    self._token[slot] += 1
    if slot not in self._idle:  # It may have died idle.
      self._idle.append(slot)
    self._dispatch()

  def _dispatch(self):
    while self._idle and self._waiting:
      x_B, future = self._waiting.popleft()
      if future.done():  # Withdrawn while queued.
        continue
      slot = self._idle.popleft()
      while not self.instances[slot].alive:  # Rejoins through replace().
        if not self._idle:
          self._waiting.appendleft((x_B, future))
          return
        slot = self._idle.popleft()
      self._start(slot, x_B, future)

  def _start(self, slot, x_B, future):
    loop = asyncio.get_running_loop()
    delay_s, drop = (0.0, False) if self._injector is None else (
        self._injector.draw(slot, loop.time()))
    token, started = self._token[slot], loop.time()
    reply = self.instances[slot].call(x_B, delay_s, drop)
    timer = None if self._rpc_timeout_s is None else loop.call_later(
        self._rpc_timeout_s, self._finish, slot, token, future, None)
    reply.add_done_callback(
        lambda r: self._finish(slot, token, future, r, timer, started))

  def _finish(self, slot, token, future, reply, timer=None, started=None):
    """Ends one dispatch, by its reply or (reply None) by the timeout."""
    if timer is not None:
      timer.cancel()
    error = InstanceFailed(f"no response within {self._rpc_timeout_s} s") if (
        reply is None) else reply.exception()
    if self._token[slot] != token:  # A late reply of a finished dispatch.
      return
    self._token[slot] += 1
    if error is None:
      self.service_s.append(asyncio.get_running_loop().time() - started)
    if not future.done():
      if error is None:
        future.set_result(reply.result())
      else:
        future.set_exception(error)
    if self.instances[slot].alive:
      self._idle.append(slot)
    # After the callbacks of `future`, which may withdraw queued requests.
    asyncio.get_running_loop().call_soon(self._dispatch)
