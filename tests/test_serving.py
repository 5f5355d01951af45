"""The coding frontend, pools, faults and simulator, in virtual time (fast)."""

import asyncio
import json
import logging

import numpy as np
import pytest

import jaxcc
from jaxcc import serving
from jaxcc.serving import _bench
from jaxcc.serving import _faults
from jaxcc.serving import _logs
from jaxcc.serving import _simulator


class _Instance:
  """An in-process instance: answers `fn(x)` after a service time.

  `slow(call_index)` gives an extra delay, None to never answer, or an
  exception to fail with (as a crashed instance does).
  """
  alive = True

  def __init__(self, fn, service_s=1e-3, slow=lambda i: 0.0):
    self.fn, self.service_s, self.slow = fn, service_s, slow
    self.calls = 0

  def call(self, x_B, delay_s):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    extra = self.slow(self.calls)
    self.calls += 1
    if isinstance(extra, Exception):
      future.set_exception(extra)
    elif extra is not None:
      loop.call_later(self.service_s + delay_s + extra, future.set_result,
                      self.fn(x_B))
    return future


def _linear_f(seed=0, d=6, c=4):
  w = np.random.default_rng(seed).normal(size=(d, c)).astype(np.float32)
  return lambda x: (x.reshape(len(x), -1) @ w).astype(np.float32)


async def _serve(frontend, queries, gap_s=1e-3):
  await frontend.start(queries[0].shape[1:])
  tasks = []
  for x in queries:
    tasks.append(asyncio.create_task(frontend.predict(x)))
    await asyncio.sleep(gap_s)
  return await asyncio.gather(*tasks)


def _queries(n, seed=1, shape=(1, 6)):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_reconstructions_through_frontend_equal_exact_answer(k):
  f = _linear_f()
  rng = np.random.default_rng(k)
  slow = lambda i: 1.0 if rng.random() < 0.3 else 0.0  # noqa: E731
  base = serving.SharedQueuePool([_Instance(f, slow=slow) for _ in range(4)])
  parity = serving.SharedQueuePool([_Instance(f) for _ in range(2)])
  frontend = serving.Frontend(base, np.zeros(4), code=jaxcc.codes.summation(k),
                              parity_pools=[parity])
  queries = _queries(10 * k, shape=(2, 6))  # Queries of 2 examples.
  answers = _simulator.simulate(_serve(frontend, queries))
  for x, answer in zip(queries, answers):
    np.testing.assert_allclose(answer.output, f(x), rtol=1e-5, atol=1e-5)
  sources = [a.source for a in answers]
  assert sources.count("reconstruction") >= 2
  assert frontend.counts["reconstruction"] == sources.count("reconstruction")
  assert min(a.latency_s for a in answers  # Rebuilt, not waited for 1 s.
             if a.source == "reconstruction") < 0.1
  assert len(frontend.decode_us) >= 2 and len(frontend.encode_us) == 10


def _one_stalled_query(k, group_timeout_s, deadline_s):
  """One query (a quiet period) whose base instance never answers."""
  f = _linear_f()
  base = serving.SharedQueuePool(
      [_Instance(f, slow=lambda i: None if i == 1 else 0.0)])  # 0: F(0).
  parity = serving.SharedQueuePool([_Instance(f)])
  frontend = serving.Frontend(
      base, np.full(4, -1.0), code=jaxcc.codes.summation(k),
      parity_pools=[parity], group_timeout_s=group_timeout_s,
      deadline_s=deadline_s)
  queries = _queries(1)
  (answer,) = _simulator.simulate(_serve(frontend, queries))
  return f(queries[0]), answer, frontend


def test_group_timeout_flushes_partial_group():
  exact, answer, frontend = _one_stalled_query(3, 0.05, deadline_s=5.0)
  assert answer.source == "reconstruction"
  np.testing.assert_allclose(answer.output, exact, rtol=1e-5, atol=1e-5)
  assert 0.05 <= answer.latency_s < 0.06
  assert frontend.encode_us and frontend.counts["default"] == 0


def test_without_group_timeout_the_deadline_serves_the_default():
  _, answer, frontend = _one_stalled_query(3, None, deadline_s=0.2)
  assert answer.source == "default"
  np.testing.assert_array_equal(answer.output, np.full((1, 4), -1.0))
  assert answer.latency_s == pytest.approx(0.2)
  assert not frontend.encode_us  # The group never filled.


def test_undecodable_group_serves_default_at_once_and_counts_failures():
  f = _linear_f()
  crash = serving.InstanceFailed("crashed")
  base = serving.SharedQueuePool(
      [_Instance(f, slow=lambda i: 0.0 if i == 0 else crash)])  # 0: F(0).
  parity = serving.SharedQueuePool([_Instance(f, slow=lambda i: crash)])
  frontend = serving.Frontend(base, np.zeros(4), parity_pools=[parity],
                              code=jaxcc.codes.summation(2), deadline_s=10.0)
  answers = _simulator.simulate(_serve(frontend, _queries(2)))
  assert [a.source for a in answers] == ["default", "default"]
  assert max(a.latency_s for a in answers) < 0.01  # Not at the deadline.
  assert frontend.counts["failure"] == 3


def test_hedged_copy_wins_and_queued_loser_is_withdrawn():
  f = _linear_f()
  slow_first = lambda i: 1.0 if i == 0 else 0.0  # noqa: E731
  first, second = _Instance(f, slow=slow_first), _Instance(f)
  frontend = serving.Frontend(serving.SharedQueuePool([first, second]),
                              np.zeros(4), hedge_after_s=0.01)
  (answer,) = _simulator.simulate(_serve(frontend, _queries(1)))
  assert answer.source == "original"
  assert answer.latency_s == pytest.approx(0.011)  # The copy on `second`.
  assert (first.calls, second.calls) == (1, 1)
  only = _Instance(f, slow=slow_first)
  frontend = serving.Frontend(serving.SharedQueuePool([only]), np.zeros(4),
                              hedge_after_s=0.01)
  answers = _simulator.simulate(_serve(frontend, _queries(2), gap_s=2.0))
  assert answers[0].latency_s == pytest.approx(1.001)
  assert only.calls == 2  # The queued copy of query 0 never ran.


def test_sim_parm_has_lower_tail_than_equal_resources_and_is_seeded():
  service_s = np.random.default_rng(0).gamma(4.0, 2.5e-4, 500) + 5e-4
  faults = serving.Faults(process="episodes", rate=0.5, duration_s=0.5,
                          delay_s=0.05)
  queries = [np.zeros((1, 1), np.float32)] * 2000

  def run(mode, seed):
    async def make_pool(factory, n, intervals, pool_seed):
      del factory
      rng = np.random.default_rng([pool_seed, 3])
      return serving.SharedQueuePool(
          [_simulator.SimInstance(service_s, rng) for _ in range(n)],
          injector=serving.Injector(faults, intervals, pool_seed))
    served = serving.linear(np.zeros((1, 1)), 2, (1,))
    result = _simulator.simulate(_bench.run_mode(
        mode, served, make_pool, queries, rate=300.0, k=2, num_base=4,
        faults=faults, seed=seed, group_timeout_s=0.02))
    return _bench.latency_summary(result.predictions), result.counts

  parm, counts = run("parm", 0)
  assert run("parm", 0) == (parm, counts)
  assert run("parm", 1)[0] != parm
  equal, _ = run("equal-resources", 0)
  assert parm["p99.9"] < 0.7 * equal["p99.9"]
  assert counts["reconstruction"] > 0 and counts["default"] == 0


def test_fault_schedules():
  faults = serving.Faults(process="episodes", rate=0.2, duration_s=0.5)
  intervals = serving.schedule(faults, 50, 1000.0, seed=0)
  slow_fraction = np.mean([np.sum(i[:, 1] - i[:, 0]) for i in intervals])
  assert 0.07 < slow_fraction / 1000.0 < 0.12  # About 1 - exp(-0.1).
  transfers = serving.Faults(process="transfers", pairs=2,
                             bandwidth_mb_s=100.0)
  intervals = serving.schedule(transfers, 6, 100.0, seed=0)
  busy = [sum(_faults.is_slow(i, t) for i in intervals)
          for t in np.linspace(0.5, 99.5, 50)]
  assert 2 <= min(busy) and max(busy) <= 4  # 2 pairs, some overlapping.
  rng = np.random.default_rng(0)
  never = np.zeros((0, 2))
  assert _faults.extra_delay(transfers, never, 1.0, rng) == 0.0
  always = np.array([[0.0, 10.0]])
  delays = [_faults.extra_delay(transfers, always, 1.0, rng)
            for _ in range(1000)]
  assert min(delays) >= transfers.delay_s
  assert max(delays) == transfers.max_delay_s


def test_bad_fault_parameters_are_rejected():
  with pytest.raises(ValueError, match="unknown slowdown process"):
    serving.Faults(process="gremlins")
  with pytest.raises(ValueError, match="non-negative"):
    serving.Faults(drop_prob=1.5)
  with pytest.raises(ValueError, match="multiple of k"):
    _bench.instance_counts("parm", 3, 4)


@pytest.mark.parametrize("max_in_flight, max_missed, retired",
                         [(2, None, 0), (3, 2, 1)])
def test_hung_instance_holds_at_most_max_in_flight_calls_and_is_retired(
    max_in_flight, max_missed, retired):
  f = _linear_f()
  hung, healthy = _Instance(f, slow=lambda i: None), _Instance(f)
  pool = serving.SharedQueuePool(
      [hung, healthy], rpc_timeout_s=0.1, max_in_flight=max_in_flight,
      max_missed=max_missed)

  async def scenario():
    futures = []
    for x in _queries(50):
      futures.append(pool.submit(x))
      await asyncio.sleep(0.02)
    return await asyncio.gather(*futures, return_exceptions=True)

  results = _simulator.simulate(scenario())
  failed = [r for r in results if isinstance(r, serving.InstanceFailed)]
  assert hung.calls == len(failed) == 2  # Then it took no more work.
  stats = pool.stats()
  assert (stats["unresponsive"], stats["live"]) == (retired, 2 - retired)
  assert stats["in_flight"] == 2 and stats["queued"] == 0


def test_late_answers_reset_the_missed_deadlines():
  f = _linear_f()
  late = _Instance(f, slow=lambda i: 0.15)  # Every answer after its timeout.
  pool = serving.SharedQueuePool([late], rpc_timeout_s=0.1, max_missed=2)

  async def scenario():
    futures = []
    for x in _queries(5):
      futures.append(pool.submit(x))
      await asyncio.sleep(0.2)
    return await asyncio.gather(*futures, return_exceptions=True)

  results = _simulator.simulate(scenario())
  # Slow is not dead: each late answer ends the streak of one miss.
  assert all(isinstance(r, serving.InstanceFailed) for r in results)
  assert late.calls == 5 and pool.stats()["unresponsive"] == 0


def test_queued_requests_are_batched_up_to_max_rows_and_split_back():
  f = _linear_f()
  rows = []
  instance = _Instance(lambda x: rows.append(len(x)) or f(x), service_s=0.01)
  pool = serving.SharedQueuePool([instance], max_rows=5)
  shapes = [(1, 6), (2, 6), (1, 6), (1, 6), (1, 6), (1, 2, 3), (1, 6),
            (6, 6), (1, 6)]
  queries = [_queries(1, seed=i, shape=s)[0] for i, s in enumerate(shapes)]

  async def scenario():
    futures = [pool.submit(x) for x in queries]  # The first goes alone.
    futures[3].cancel()  # Withdrawn while queued: skipped.
    return await asyncio.gather(*futures, return_exceptions=True)

  results = _simulator.simulate(scenario())
  # Calls: [0], [1, 2, 4] (4 rows; 5 differs in shape), [5] (6 differs),
  # [6] (7 does not fit), [7] (more rows than fit, alone), [8].
  assert rows == [1, 4, 1, 1, 6, 1]
  for i in (0, 1, 2, 4, 5, 6, 7, 8):
    np.testing.assert_allclose(results[i], f(queries[i]), rtol=1e-6)
  assert pool.stats()["started"] == 8 and len(pool.service_s) == 8
  with pytest.raises(ValueError, match="max_rows"):
    serving.SharedQueuePool([instance], max_rows=0)


def test_a_batch_shares_its_instance_failure():
  f = _linear_f()
  failing = _Instance(f, slow=lambda i: RuntimeError("down") if i else 0.0)
  pool = serving.SharedQueuePool([failing], max_rows=4)

  async def scenario():
    return await asyncio.gather(*(pool.submit(x) for x in _queries(4)),
                                return_exceptions=True)

  results = _simulator.simulate(scenario())
  np.testing.assert_allclose(results[0], f(_queries(4)[0]), rtol=1e-6)
  assert all(isinstance(r, RuntimeError) for r in results[1:])
  assert failing.calls == 2


def test_max_missed_above_max_in_flight_is_rejected():
  with pytest.raises(ValueError, match="max_missed <= max_in_flight"):
    serving.SharedQueuePool([], max_in_flight=2, max_missed=3)


def test_rate_limited_log_suppresses_floods_and_says_so(caplog):
  now = [0.0]
  log = _logs.Limited(logging.getLogger("jaxcc.test"), burst=3,
                      period_s=10.0, clock=lambda: now[0])
  with caplog.at_level(logging.ERROR, logger="jaxcc.test"):
    for i in range(1000):
      log.error("flood", "restart %d failed", i)
      log.error("other", "another fault")
    now[0] = 10.0
    log.error("flood", "restart again failed")
  flood = [r.getMessage() for r in caplog.records if "restart" in r.message]
  assert flood == ["restart 0 failed", "restart 1 failed", "restart 2 failed",
                   "restart again failed (997 similar messages suppressed)"]
  assert sum("another" in r.message for r in caplog.records) == 3


def test_sim_experiment_writes_results_and_table(tmp_path):
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  times = tmp_path / "service_times.json"
  times.write_text(json.dumps([0.002, 0.003, 0.004, 0.05]))
  config = serving_config.get_config(
      f"backend=sim,service_times={times},modes=none+parm,ks=2,num_base=2,"
      "num_queries=300,rate=100")
  results = serving.run_experiment(config, str(tmp_path / "out"))
  saved = json.loads((tmp_path / "out" / "results.json").read_text())
  assert saved["runs"] == json.loads(json.dumps(results["runs"]))
  assert [(r["mode"], r["k"], r["instances"]) for r in saved["runs"]] == [
      ("none", 2, [2, 0]), ("parm", 2, [2, 1])]
  for row in saved["runs"]:
    assert sum(row["counts"].values()) == 300
  table = serving.experiment_table(results["runs"])
  assert "| none | - | 2 + 0 |" in table and "| parm | 2 | 2 + 1 |" in table
  assert (tmp_path / "out" / "latency_cdf.png").exists()


def _user_model():
  """A flax module standing in for a user's F, and its variables."""
  from jaxcc import models  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  module = models.MLP(num_outputs=3)
  variables = module.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 1)))
  return module, variables, jax


def test_from_model_serves_a_user_module_and_its_parity_models():
  import pickle  # pylint: disable=g-import-not-at-top
  module, variables, jax = _user_model()
  parity_vars = jax.tree.map(lambda a: np.stack([a * 0.5, a * -1.0]),
                             variables)
  served = serving.from_model(module, variables, parity_vars,
                              jaxcc.codes.linear(2, 2), input_shape=(4, 4, 1),
                              input_dtype=np.uint8,
                              preprocess=lambda x: x / 255.0)
  assert served.num_outputs == 3 and len(served.parities) == 2
  x = served.preprocess(np.full((2, 4, 4, 1), 51, np.uint8))
  assert x.dtype == np.float32 and np.allclose(x, 0.2)
  np.testing.assert_allclose(served.base()(x), module.apply(variables, x),
                             rtol=1e-6)
  second = pickle.loads(pickle.dumps(served.parities[1]))  # to a worker
  np.testing.assert_allclose(
      second()(x), module.apply(jax.tree.map(lambda a: a[1], parity_vars), x),
      rtol=1e-6)


def test_from_model_refuses_what_cannot_be_served():
  module, variables, jax = _user_model()
  one = jax.tree.map(lambda a: a[None], variables)
  with pytest.raises(ValueError, match="2 parity models"):
    serving.from_model(module, variables, one, jaxcc.codes.linear(2, 2),
                       input_shape=(4, 4, 1))
  with pytest.raises(ValueError, match="parity model has 5 outputs, F has 3"):
    serving.from_model(module, variables, one, jaxcc.codes.summation(2),
                       input_shape=(4, 4, 1),
                       parity_module=type(module)(num_outputs=5))

  class Local(type(module)):  # not importable by a worker process
    pass
  with pytest.raises(ValueError, match="cannot be pickled"):
    serving.flax_module(Local(num_outputs=3), variables, (4, 4, 1))
