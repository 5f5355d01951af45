"""A pool of model instances behind one shared queue (Clipper's policy).

An *instance* has `alive` and `call(x_B..., delay_s) -> Future` of `y_BC`:
it waits `delay_s` (injected slowdown) and computes; its future fails with
`InstanceFailed` when it dies. Requests wait in one FIFO queue and go to
whichever live instance is free; a request withdrawn (cancelled) while
queued is skipped, one cancelled in service is computed and ignored.

A request whose response is not back within `rpc_timeout_s` fails, and its
instance may take the next one while it still works on the late one, up to
`max_in_flight` unanswered calls: a hung instance never accumulates work. An
instance that lets `max_missed` calls in a row pass their timeout without
answering is treated as dead (`_unresponsive`); `max_missed` is at most
`max_in_flight`, since a hung instance gets no more calls than that.
Injected drops lose a response that did come back, so they fail the request
without counting against its instance.

Batching (Clipper's, adaptive to the load): with `max_rows` > 1, an instance
that frees up takes every queued request of the same example shape, up to
`max_rows` rows in all, as one call on their concatenation, and each
request gets its own rows of the output. At low load a call holds one
request; as the queue grows, calls grow with it. A batch shares its fate:
its injected slowdown and drop, its timeout and its instance's failure.

With a latency objective `batch_slo_s`, each instance's row cap follows
Clipper's AIMD instead (`_batching.AimdSizer`): from one row it grows by one
after each full call whose service time (dispatch to reply) met the
objective and shrinks by 10 % after each call that missed it, within
[1, max_rows]. The cap is per instance, as Clipper keeps one per model
container: instances may differ (a slowed or remote one), each serves one
call at a time, so its observations are a clean sequence of its own cap's
outcomes, and a slow instance does not shrink the others' calls. It
survives the instance's replacement (the same model on the same machine).
Every answer counts, on time or late, dropped or not; a call that failed
(its instance died) says nothing about its size and does not.
"""

import asyncio
import collections
import copy
import logging
from typing import Optional

import numpy as np

from jaxcc.serving import _batching
from jaxcc.serving import _faults
from jaxcc.serving import _logs

_log = _logs.Limited(logging.getLogger(__name__))


class InstanceFailed(RuntimeError):
  """An instance died, or its response did not come back in time."""


class _Slot:
  """One instance and what the pool has sent it."""

  def __init__(self, instance):
    self.instance = instance
    self.busy = False  # Serving a request neither answered nor timed out.
    self.in_flight = 0  # Calls the instance has not answered.
    self.missed = 0  # Calls in a row it let pass their timeout.
    self.retired = False  # Treated as dead until replaced.


class SharedQueuePool:
  """Model instances served from a single shared queue.

  Args:
    instances: the instances, one per slot.
    injector: draws the slowdown and drop of each request (None: no faults).
    rpc_timeout_s: a request whose response has not come back by then fails.
      None: wait (then drops cannot be injected).
    max_in_flight: most unanswered calls one instance holds.
    max_missed: calls in a row past their timeout after which an instance is
      treated as dead (None: never); at most `max_in_flight`.
    max_rows: most rows in one call (1: no batching; a longer request
      still goes alone).
    batch_slo_s: the service time a call should stay within: each
      instance's row cap then follows AIMD up to `max_rows` (None: always
      `max_rows`).
  """

  def __init__(self, instances, *,
               injector: Optional[_faults.Injector] = None,
               rpc_timeout_s: Optional[float] = None,
               max_in_flight: int = 2, max_missed: Optional[int] = None,
               max_rows: int = 1, batch_slo_s: Optional[float] = None):
    if injector is not None and injector.faults.drop_prob and (
        rpc_timeout_s is None):
      raise ValueError("injected drops need an rpc_timeout_s: a lost "
                       "response is only noticed by its timeout")
    if max_in_flight < 1 or (max_missed is not None and not
                             1 <= max_missed <= max_in_flight):
      raise ValueError(f"need 1 <= max_missed <= max_in_flight (a hung "
                       f"instance gets max_in_flight calls, then none); got "
                       f"max_missed={max_missed}, max_in_flight="
                       f"{max_in_flight}")
    self._slots = [_Slot(i) for i in instances]
    sizer = _batching.sizer(max_rows, batch_slo_s)
    self._sizers = [copy.copy(sizer) for _ in self._slots]
    self._injector = injector
    self._rpc_timeout_s = rpc_timeout_s
    self._max_in_flight = max_in_flight
    self._max_missed = max_missed
    self._waiting = collections.deque()  # (x, future)
    self._free = collections.deque(range(len(self._slots)))
    self.service_s = []  # dispatch-to-reply time of every answered request
    self.started = 0  # requests an instance began (the work done)
    self.calls = 0  # calls made (a call holds one or more requests)
    self.unresponsive = 0  # instances treated as dead for missed deadlines

  @property
  def instances(self) -> list:
    return [slot.instance for slot in self._slots]

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

  def stats(self) -> dict:
    """Instances, live ones, queued requests, unanswered calls, retirements,
    requests started, calls made, and each instance's row cap."""
    return {"instances": len(self._slots),
            "live": sum(s.instance.alive and not s.retired
                        for s in self._slots),
            "queued": sum(not f.done() for _, f in self._waiting),
            "in_flight": sum(s.in_flight for s in self._slots),
            "unresponsive": self.unresponsive, "started": self.started,
            "calls": self.calls, "row_caps": [s.rows() for s in self._sizers]}

  def replace(self, index: int, instance) -> None:
    """Puts a (restarted) instance into slot `index` and gives it work."""
    self._slots[index] = _Slot(instance)
    self._release(index, self._slots[index])

  def _unresponsive(self, index: int) -> None:
    """An instance missed `max_missed` deadlines in a row: stop using it."""
    self._slots[index].retired = True
    self.unresponsive += 1
    _log.warning("unresponsive", "instance %d missed %d deadlines in a row; "
                 "treated as dead", index, self._max_missed)

  def _is_free(self, slot) -> bool:
    return (slot.instance.alive and not slot.retired and not slot.busy
            and slot.in_flight < self._max_in_flight)

  def _release(self, index, slot):
    """Makes slot `index` take work again if it can."""
    if (self._slots[index] is slot and self._is_free(slot)
        and index not in self._free):
      self._free.append(index)
    # After the callbacks of a finished request, which may withdraw others.
    asyncio.get_running_loop().call_soon(self._dispatch)

  def _dispatch(self):
    while self._free and self._waiting:
      index = self._free.popleft()
      if not self._is_free(self._slots[index]):  # Rejoins via _release.
        continue
      batch = self._batch(self._sizers[index].rows())
      if not batch:
        self._free.appendleft(index)
        return
      self._start(index, batch)

  def _batch(self, max_rows) -> list:
    """Takes the queue's first live request, and the live ones after it of
    the same example shape while the rows fit in `max_rows`."""
    batch, rows = [], 0
    while self._waiting:
      x_B, future = self._waiting[0]
      if not future.done():  # Else withdrawn while queued: skipped.
        if batch and (np.shape(x_B)[1:] != np.shape(batch[0][0])[1:]
                      or rows + len(x_B) > max_rows):
          break
        batch.append((x_B, future))
        rows += len(x_B)
      self._waiting.popleft()
    return batch

  def _start(self, index, batch):
    loop = asyncio.get_running_loop()
    slot = self._slots[index]
    delay_s, drop = (0.0, False) if self._injector is None else (
        self._injector.draw(index, loop.time()))
    slot.busy = True
    slot.in_flight += 1
    self.started += len(batch)
    self.calls += 1
    call = _Call(slot, [future for _, future in batch], drop, loop.time())
    x_B, call.ends = _batching.join([x for x, _ in batch])
    call.reply = slot.instance.call(x_B, delay_s)
    if self._rpc_timeout_s is not None:
      call.timer = loop.call_later(self._rpc_timeout_s, self._timeout, index,
                                   call)
    call.reply.add_done_callback(lambda r: self._reply(index, call))

  def _reply(self, index, call):
    """The instance answered (or failed) one call."""
    call.slot.in_flight -= 1
    error = call.reply.exception()
    seconds = asyncio.get_running_loop().time() - call.started
    if error is None:
      call.slot.missed = 0
      self._sizers[index].observe(int(call.ends[-1]), seconds)
    if (error is not None or not call.drop) and call.end():
      if error is None:
        self.service_s += [seconds] * len(call.futures)
        for future, y in zip(call.futures,
                             _batching.split(call.reply.result(), call.ends)):
          if not future.done():
            future.set_result(y)
      else:
        for future in call.futures:
          if not future.done():
            future.set_exception(error)
    self._release(index, call.slot)

  def _timeout(self, index, call):
    """No response within `rpc_timeout_s`: fail the request."""
    if not call.end():
      return
    for future in call.futures:
      if not future.done():
        future.set_exception(InstanceFailed(
            f"no response within {self._rpc_timeout_s} s"))
    slot = call.slot
    if not call.reply.done():
      slot.missed += 1
      if (self._max_missed is not None and slot.missed >= self._max_missed
          and self._slots[index] is slot and not slot.retired):
        self._unresponsive(index)
    self._release(index, slot)


class _Call:
  """One call to an instance (one or more requests, their rows ending at
  `ends`); it ends by its reply or its timeout."""

  def __init__(self, slot, futures, drop, started):
    self.slot, self.futures, self.drop, self.started = (slot, futures, drop,
                                                        started)
    self.reply = self.timer = self.ends = None
    self.ended = False

  def end(self) -> bool:
    """Frees the slot for the next request; False if already ended."""
    if self.ended:
      return False
    self.ended, self.slot.busy = True, False
    if self.timer is not None:
      self.timer.cancel()
    return True
