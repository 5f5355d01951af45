"""The local backend: real worker processes, crashes and dropped responses."""

import asyncio

import numpy as np

from jaxcc import serving

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


async def _pools(served, base_faults, base_intervals, rpc_timeout_s):
  example = np.zeros((1, _D), np.float32)
  return await asyncio.gather(
      serving.LocalPool.create(served.base, example, 2, faults=base_faults,
                               intervals=base_intervals,
                               rpc_timeout_s=rpc_timeout_s),
      serving.LocalPool.create(served.parities[0], example, 1))


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
