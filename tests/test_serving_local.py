"""The local backend: real worker processes, crashes, hangs and drops.

Tests that start worker processes (each imports JAX) are slow.
"""

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxcc import serving
from jaxcc.serving import _loadgen
from jaxcc.serving import _simulator

_D, _C = 6, 4


def _system():
  w = np.random.default_rng(0).normal(size=(_D, _C)).astype(np.float32)
  return serving.linear(w, 2, (_D,)), lambda x: x @ w


def _queries(n, seed=1):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(1, _D)).astype(np.float32) for _ in range(n)]


async def _send(frontend, queries, gap_s, at=None, action=None):
  """Sends queries `gap_s` apart, running `action` after query `at`."""
  tasks = []
  for i, x in enumerate(queries):
    tasks.append(asyncio.create_task(frontend.predict(x)))
    await asyncio.sleep(gap_s)
    if i == at:
      action()
  return await asyncio.wait_for(asyncio.gather(*tasks), 60.0)


def _check(answers, queries, f):
  """Every query answered; originals and reconstructions exact."""
  assert len(answers) == len(queries)
  for x, answer in zip(queries, answers):
    assert answer.source in serving.SOURCES
    if answer.source != "default":
      np.testing.assert_allclose(answer.output, f(x), rtol=1e-5, atol=1e-5)


def _answered(frontend):
  return sum(frontend.counts[s] for s in serving.SOURCES)


async def _pools(served, base_faults, base_intervals, **base_options):
  example = np.zeros((1, _D), np.float32)
  return await asyncio.gather(
      serving.LocalPool.create(served.base, example, 2, faults=base_faults,
                               intervals=base_intervals, **base_options),
      serving.LocalPool.create(served.parities[0], example, 1))


def _answered_by_one_worker(queries, **options):
  """The answers of one worker (`LocalPool.create(..., **options)`) to
  `queries`, all submitted at once, checked against F; and its stats."""
  served, f = _system()

  async def main():
    pool = await serving.LocalPool.create(
        served.base, np.zeros((1, _D), np.float32), 1, **options)
    try:
      answers = await asyncio.wait_for(asyncio.gather(
          *(pool.submit(x) for x in queries)), 60.0)
      return answers, pool.stats()
    finally:
      await pool.close()

  answers, stats = asyncio.run(main())
  for x, y in zip(queries, answers):
    np.testing.assert_allclose(y, f(x), rtol=1e-5, atol=1e-5)
  return stats


@pytest.mark.slow
def test_a_worker_answers_batched_calls_row_by_row():
  """max_batch=4: queued queries go to the one worker in calls of up to 4
  rows; each gets its own rows back."""
  queries = _queries(9) + [np.ones((2, _D), np.float32)]
  stats = _answered_by_one_worker(queries, max_batch=4)
  assert stats["started"] == len(queries) and stats["live"] == 1


@pytest.mark.slow
def test_a_worker_pool_with_a_batch_slo_grows_its_row_cap_from_one():
  """batch_slo_s reaches the pool: 10 queries queued at once go in calls of
  1, 2, 3 and 4 rows (AIMD, every call well within 10 s), not 1, 8, 1."""
  stats = _answered_by_one_worker(_queries(10), max_batch=8,
                                  batch_slo_s=10.0)
  assert stats["calls"] == 4 and stats["row_caps"] == [5]


@pytest.mark.slow
def test_killing_an_instance_mid_run_loses_no_query():
  served, f = _system()
  # Instance 0 is slow (about 50 ms a request), so it is busy when killed.
  slow = serving.Faults(process="episodes", delay_s=0.05, alpha=50.0,
                        restart_s=0.1)
  always = [np.array([[0.0, 1e9]]), np.zeros((0, 2))]

  async def scenario():
    base, parity = await _pools(served, slow, always, rpc_timeout_s=10.0)
    try:
      frontend = serving.Frontend(
          base, served.default_output, code=served.code,
          parity_pools=[parity], group_timeout_s=0.05, deadline_s=10.0)
      await frontend.start(served.input_shape)
      base.begin_faults(asyncio.get_running_loop().time(), 60.0)
      killed = base.instances[0]
      first = _queries(40)
      answers = await _send(frontend, first, 0.01, at=20,
                            action=lambda: base.kill(0))
      _check(answers, first, f)
      assert _answered(frontend) == 40
      assert frontend.counts["reconstruction"] >= 1
      for _ in range(600):  # The pool restarts it (bounded wait).
        if base.instances[0] is not killed and base.instances[0].alive:
          break
        await asyncio.sleep(0.1)
      assert base.instances[0].alive and base.instances[0].pid != killed.pid
      again = _queries(10, seed=2)
      _check(await _send(frontend, again, 0.01), again, f)
      assert _answered(frontend) == 50
      # Uncoded, both instances idle: one query goes to each, and the one on
      # (slow) instance 0 is lost with it and answered by the default.
      await asyncio.sleep(0.5)  # Instance 0 finishes requests now ignored.
      plain = serving.Frontend(base, served.default_output, deadline_s=10.0)
      pair = _queries(2, seed=3)
      answers = await _send(plain, pair, 0.0, at=1,
                            action=lambda: base.kill(0))
      _check(answers, pair, f)
      assert sorted(a.source for a in answers) == ["default", "original"]
      assert plain.counts["failure"] == 1
    finally:
      await base.close()
      await parity.close()

  asyncio.run(scenario())


@pytest.mark.slow
def test_dropped_responses_are_rebuilt_or_defaulted():
  served, f = _system()
  drops = serving.Faults(drop_prob=0.3)

  async def scenario():
    base, parity = await _pools(served, drops, None, rpc_timeout_s=0.1)
    try:
      frontend = serving.Frontend(
          base, served.default_output, code=served.code,
          parity_pools=[parity], group_timeout_s=0.05, deadline_s=1.0)
      await frontend.start(served.input_shape)
      base.begin_faults(asyncio.get_running_loop().time(), 60.0)
      queries = _queries(30)
      answers = await _send(frontend, queries, 0.01)
      _check(answers, queries, f)
      assert _answered(frontend) == 30
      assert frontend.counts["reconstruction"] >= 1
      # Uncoded, a lost response times out and the default is served.
      plain = serving.Frontend(base, served.default_output, deadline_s=1.0)
      answers = await _send(plain, queries, 0.01)
      _check(answers, queries, f)
      assert plain.counts["failure"] == plain.counts["default"] >= 1
    finally:
      await base.close()
      await parity.close()

  asyncio.run(scenario())


class _FakeWorker:
  """A worker without a process: answers after 1 ms until killed."""

  def __init__(self, pid):
    self.pid, self.alive, self.stopped = pid, True, False
    self.exited = asyncio.get_running_loop().create_future()
    self._pending = []

  def call(self, x_B, delay_s):
    future = asyncio.get_running_loop().create_future()
    if not self.alive:
      future.set_exception(serving.InstanceFailed("dead"))
      return future
    self._pending.append(future)
    asyncio.get_running_loop().call_later(
        1e-3 + delay_s, lambda: future.done() or future.set_result(x_B))
    return future

  def kill(self):
    if self.alive:
      self.alive = False
      for future in self._pending:
        if not future.done():
          future.set_exception(serving.InstanceFailed("killed"))
      self.exited.set_result(None)

  async def stop(self):
    self.kill()
    self.stopped = True


def test_restart_loop_survives_errors_backs_off_and_counts(caplog):
  errors = [OSError(24, "Too many open files")] * 3 + [RuntimeError("?")]
  spawned = []

  async def spawn():
    await asyncio.sleep(0.01)
    if errors:
      raise errors.pop(0)
    spawned.append(_FakeWorker(100 + len(spawned)))
    return spawned[-1]

  async def scenario():
    loop = asyncio.get_running_loop()
    workers = [_FakeWorker(0), _FakeWorker(1)]
    pool = serving.LocalPool(workers, spawn,
                             faults=serving.Faults(restart_s=0.5),
                             max_backoff_s=4.0)
    pool.kill(0)
    queries = [pool.submit(np.full((1, 2), i)) for i in range(5)]
    answers = await asyncio.gather(*queries)  # Served by instance 1.
    for _ in range(2000):  # 100 s of virtual time.
      if pool.instances[0].alive:
        break
      await asyncio.sleep(0.05)
    restarted_at = loop.time()
    stats = pool.stats()
    await pool.close()
    return workers, answers, restarted_at, stats

  with caplog.at_level(logging.INFO, logger="jaxcc.serving._local"):
    workers, answers, restarted_at, stats = _simulator.simulate(scenario())
  assert [int(a[0, 0]) for a in answers] == list(range(5))
  assert workers[0].stopped  # Reaped before the restart.
  # Tries at 0.5, then back-off 1, 2, 4 (cap), 4 s: the fifth succeeds.
  assert restarted_at == pytest.approx(0.5 + 1 + 2 + 4 + 4 + 5 * 0.01,
                                       abs=0.06)
  assert stats == dict(stats, live=2, deaths=1, restarts=1,
                       failed_restarts=4)
  messages = [r.getMessage() for r in caplog.records]
  assert sum("failed" in m for m in messages) == 4
  assert any("Too many open files" in m for m in messages)
  assert any("restarted as pid 100" in m for m in messages)


def _npy(x):
  buffer = io.BytesIO()
  np.save(buffer, x)
  return buffer.getvalue()


async def _http_system(served, **base_options):
  """Base (2 workers) and parity pools behind a coded frontend and HTTP."""
  base, parity = await _pools(served, serving.Faults(restart_s=0.1), None,
                              **base_options)
  frontend = serving.Frontend(
      base, served.default_output, code=served.code, parity_pools=[parity],
      group_timeout_s=0.02, deadline_s=2.0)
  await frontend.start(served.input_shape)
  endpoint = serving.Endpoint(
      frontend.predict, served.input_shape, served.input_dtype,
      lambda: dict(frontend.counts, base=base.stats()))
  server = await serving.serve_http(endpoint)
  return base, parity, server, f"http://127.0.0.1:{server.port}"


async def _wait_for(condition, timeout_s=60.0):
  for _ in range(int(timeout_s / 0.1)):
    if condition():
      return
    await asyncio.sleep(0.1)
  raise TimeoutError("condition not met in time")


def _check_http(result, queries, f):
  """Every request got a 200; originals and reconstructions exact."""
  assert result.outcomes == ["200"] * len(queries)
  for i, answer in enumerate(result.answers):
    assert answer["source"] in serving.SOURCES
    if answer["source"] != "default":
      np.testing.assert_allclose(answer["outputs"], f(queries[i]),
                                 rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_hung_worker_does_not_stall_the_server_and_is_replaced():
  served, f = _system()
  queries = _queries(150)

  async def scenario():
    base, parity, server, url = await _http_system(
        served, rpc_timeout_s=0.3, max_in_flight=2, max_missed=2)
    hung = base.instances[0]
    try:
      calls = hung._next_id  # pylint: disable=protected-access
      os.kill(hung.pid, signal.SIGSTOP)
      load = asyncio.create_task(_loadgen.run(
          url, [_npy(x) for x in queries], rate=100.0, num_requests=150,
          connections=16, timeout_s=10.0))
      client, probes = serving.Client(url), []
      while not load.done():
        tic = time.perf_counter()
        assert await asyncio.to_thread(client.request, "GET", "/healthz")
        probes.append(time.perf_counter() - tic)
        await asyncio.sleep(0.05)
      client.close()
      result = await load
      held = hung._next_id - calls  # pylint: disable=protected-access
      await _wait_for(lambda: base.stats()["restarts"] == 1)
      stats = base.stats()
      replaced = base.instances[0]
      again = await base.submit(queries[0])
    finally:
      server.close()
      await asyncio.gather(base.close(), parity.close())
    return result, probes, held, stats, hung.pid, replaced, again

  result, probes, held, stats, pid, replaced, again = asyncio.run(scenario())
  _check_http(result, queries, f)
  assert len(probes) >= 10 and max(probes) < 0.5, probes
  assert held <= 2  # The in-flight cap: the hung worker got 2 requests.
  assert stats["unresponsive"] == 1 and stats["deaths"] == 1
  assert stats["live"] == 2 and replaced.pid != pid
  np.testing.assert_allclose(again, f(queries[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_worker_killed_under_http_load_loses_no_query():
  served, f = _system()
  queries = _queries(300, seed=4)

  async def scenario():
    base, parity, server, url = await _http_system(served, rpc_timeout_s=1.0)
    try:
      load = asyncio.create_task(_loadgen.run(
          url, [_npy(x) for x in queries], rate=150.0, num_requests=300,
          connections=32, timeout_s=10.0))
      await asyncio.sleep(0.7)
      base.kill(0)
      result = await load
      client = serving.Client(url)
      stats = await asyncio.to_thread(client.stats)
      client.close()
      await _wait_for(lambda: base.stats()["restarts"] == 1)
      after = base.stats()
    finally:
      await server.shutdown(5.0)
      await asyncio.gather(base.close(), parity.close())
    return result, stats, after

  result, stats, after = asyncio.run(scenario())
  _check_http(result, queries, f)
  assert sum(stats[s] for s in serving.SOURCES) == len(queries)
  sources = [a["source"] for a in result.answers]
  assert {s: stats[s] for s in serving.SOURCES} == {
      s: sources.count(s) for s in serving.SOURCES}
  assert stats["base"]["deaths"] == 1
  assert after["live"] == 2 and after["deaths"] == after["restarts"] == 1


@pytest.mark.slow
def test_serve_py_binds_localhost_and_injects_no_faults_by_default():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = (
      "import serve; from absl import flags; from configs import serving; "
      "from jaxcc.serving import Faults; flags.FLAGS(['serve']); "
      "c = serving.get_config(); "
      "print(flags.FLAGS.host, flags.FLAGS.faults, "
      "serve.faults(c, False) == Faults(), serve.faults(c, True).process)")
  out = subprocess.run([sys.executable, "-c", script], cwd=root, check=True,
                       capture_output=True, text=True, timeout=120).stdout
  assert out.split() == ["127.0.0.1", "False", "True", "episodes"]
