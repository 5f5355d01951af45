"""The local backend: model instances as worker processes on this machine.

Each instance is a Python process (`jaxcc.serving._worker`) that builds its
model from a factory, jits it on the CPU (one thread) and answers requests
over a socket pair. A pool restarts an instance `faults.restart_s` after its
process dies, and can kill instances at Poisson times (`faults.crash_rate`)
to inject crashes.
"""

import asyncio
from multiprocessing import connection
import os
import socket
import subprocess
import sys
from typing import Optional

import numpy as np

from jaxcc.serving import _faults
from jaxcc.serving import _pool
from jaxcc.serving import _worker

_WORKER_ENV = {"JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1"}
_WORKER_MAIN = ("import sys; from jaxcc.serving import _worker; "
                "_worker.serve_fd(int(sys.argv[1]))")


class WorkerInstance:
  """One model instance: a worker process and the socket to it."""

  def __init__(self, model_factory):
    self._factory = model_factory
    self._pending = {}
    self._next_id = 0
    self._process = self._conn = None
    self.alive = False
    self.exited = None  # Future set when the process is gone.

  async def start(self, example_B, timeout_s: float = 120.0) -> None:
    """Spawns the process and waits until it has compiled its model."""
    loop = asyncio.get_running_loop()
    parent, child = socket.socketpair()
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    env = dict(os.environ, **_WORKER_ENV, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])))
    with child:
      self._process = subprocess.Popen(
          [sys.executable, "-c", _WORKER_MAIN, str(child.fileno())],
          pass_fds=[child.fileno()], env=env)
    self._conn = connection.Connection(parent.detach())
    self._conn.send(self._factory)
    self.exited = loop.create_future()
    ready = loop.create_future()
    self._pending[_worker.READY] = ready
    loop.add_reader(self._conn.fileno(), self._on_readable)
    self.alive = True
    await asyncio.wait_for(ready, timeout_s)
    await asyncio.wait_for(self.call(example_B, 0.0, False), timeout_s)

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process else None

  def call(self, x_B, delay_s: float, drop: bool) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    if not self.alive:
      future.set_exception(_pool.InstanceFailed("instance is not running"))
      return future
    self._next_id += 1
    self._pending[self._next_id] = future
    try:
      self._conn.send((self._next_id, x_B, delay_s, drop))
    except OSError:
      self._on_exit()
    return future

  def kill(self) -> None:
    """Crashes the instance (SIGKILL); the pool notices and restarts it."""
    if self._process is not None and self._process.poll() is None:
      self._process.kill()

  async def stop(self) -> None:
    if self._process is None:
      return
    self.kill()
    if self.exited is not None:
      await self.exited
    await asyncio.to_thread(self._process.wait)

  def _on_readable(self):
    try:
      message = self._conn.recv()
    except (EOFError, OSError):
      self._on_exit()
      return
    if message == _worker.READY:
      self._pending.pop(_worker.READY).set_result(None)
      return
    request_id, y_BC = message
    future = self._pending.pop(request_id, None)
    if future is not None and not future.done():
      future.set_result(y_BC)

  def _on_exit(self):
    """The process died: fail what it held."""
    if not self.alive:
      return
    self.alive = False
    asyncio.get_running_loop().remove_reader(self._conn.fileno())
    self._conn.close()
    for future in self._pending.values():
      if not future.done():
        future.set_exception(_pool.InstanceFailed(
            f"instance process {self.pid} died"))
    self._pending.clear()
    self.exited.set_result(None)


class LocalPool(_pool.SharedQueuePool):
  """Worker-process instances behind a shared queue, restarted on a crash.

  Create with `await LocalPool.create(...)`; stop with `await pool.close()`.
  """

  def __init__(self, instances, model_factory, example_B, faults, intervals,
               seed, rpc_timeout_s):
    super().__init__(instances,
                     injector=_faults.Injector(faults, intervals, seed),
                     rpc_timeout_s=rpc_timeout_s)
    self._factory, self._example = model_factory, example_B
    self._faults, self._seed = faults, seed
    self._tasks = [asyncio.create_task(self._supervise(slot))
                   for slot in range(len(instances))]

  @classmethod
  async def create(cls, model_factory, example_B, num_instances: int, *,
                   faults: _faults.Faults = _faults.Faults(), intervals=None,
                   seed: int = 0, rpc_timeout_s: Optional[float] = 1.0):
    """Starts `num_instances` workers of `model_factory`, warmed on `example_B`.

    Args:
      model_factory: a factory from `jaxcc.serving` (e.g. `Served.base`).
      example_B: an input batch to compile the model on.
      num_instances: number of worker processes.
      faults: faults to inject once `begin_faults` is called.
      intervals: slow intervals per instance (`schedule`); None: none.
      seed: seed of the injected delays, drops and crashes.
      rpc_timeout_s: a response not back by then counts as lost.
    """
    instances = [WorkerInstance(model_factory) for _ in range(num_instances)]
    await asyncio.gather(*(i.start(example_B) for i in instances))
    if intervals is None:
      intervals = [np.zeros((0, 2))] * num_instances
    return cls(instances, model_factory, example_B, faults, intervals, seed,
               rpc_timeout_s)

  def begin_faults(self, t0: float, horizon_s: float) -> None:
    """Also kills instances at the Poisson times of `faults.crash_rate`."""
    super().begin_faults(t0, horizon_s)
    crashes = _faults.crash_times(self._faults, len(self.instances),
                                  horizon_s, self._seed)
    self._tasks += [asyncio.create_task(self._crash_at(slot, t0, times))
                    for slot, times in enumerate(crashes) if len(times)]

  def kill(self, slot: int) -> None:
    self.instances[slot].kill()

  async def close(self) -> None:
    for task in self._tasks:
      task.cancel()
    await asyncio.gather(*self._tasks, return_exceptions=True)
    await asyncio.gather(*(i.stop() for i in self.instances))

  async def _supervise(self, slot):
    """Restarts the instance of `slot` whenever its process dies."""
    while True:
      await asyncio.shield(self.instances[slot].exited)
      await asyncio.sleep(self._faults.restart_s)
      instance = WorkerInstance(self._factory)
      try:
        await instance.start(self._example)
      except (asyncio.TimeoutError, _pool.InstanceFailed):
        await instance.stop()
        continue
      except asyncio.CancelledError:
        await instance.stop()
        raise
      self.replace(slot, instance)

  async def _crash_at(self, slot, t0, times):
    loop = asyncio.get_running_loop()
    for t in times:
      await asyncio.sleep(max(0.0, t0 + t - loop.time()))
      self.kill(slot)
