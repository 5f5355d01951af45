"""Serving a non-systematic code (ApproxIFER's Berrut), coding in a thread,
and a linear code's NumPy coding (`_coding.Host`).

Instances are in-process and time is virtual (`_simulator`), except where
a test says otherwise.
"""

import asyncio
import concurrent.futures
import itertools

import numpy as np
import pytest

import jaxcc
from jaxcc import serving
from jaxcc.serving import _bench
from jaxcc.serving import _coding
from jaxcc.serving import _experiment
from jaxcc.serving import _simulator

_D, _C = 6, 4


class _Recording:
  """An instance computing `fn` after `service_s` (None: never answers),
  recording every input it is given."""
  alive = True

  def __init__(self, fn, service_s=1e-3):
    self.fn, self.service_s, self.inputs = fn, service_s, []

  def call(self, x_B, delay_s):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    self.inputs.append(np.array(x_B))
    if self.service_s is not None:
      loop.call_later(self.service_s + delay_s, future.set_result,
                      self.fn(x_B))
    return future


def _f():
  """A non-linear F, so that no code reproduces it exactly."""
  w = np.random.default_rng(0).normal(size=(_D, _C)).astype(np.float32)
  return lambda x: np.tanh(x.reshape(len(x), -1) @ w).astype(np.float32)


def _queries(n, seed=1, b=2):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(b, _D)).astype(np.float32) for _ in range(n)]


def _decoded(code, f, queries, available_N):
  """What the decoder makes of F on the group's coded queries (float64-free
  reference: the code's own encode and decode, called directly)."""
  x_BK = np.stack(queries, 1)
  coded_BN = np.asarray(code.encode({}, x_BK))
  y_BN = np.stack([f(coded_BN[:, n]) for n in range(code.k + code.r)], 1)
  return np.asarray(code.decode({}, y_BN, np.asarray(available_N)))


def _serve(frontend, queries, gap_s=1e-4):
  async def main():
    await frontend.start((_D,))
    tasks = []
    for x in queries:
      tasks.append(asyncio.create_task(frontend.predict(x)))
      await asyncio.sleep(gap_s)
    return await asyncio.gather(*tasks)
  return _simulator.simulate(main())


def test_non_systematic_group_answers_decoded_outputs_despite_r_stragglers():
  k, r = 3, 2
  code = jaxcc.codes.berrut(k, r, systematic=False)
  f = _f()
  base = [_Recording(f) for _ in range(k)]
  late, hung = _Recording(f, 1.0), _Recording(f, None)  # r stragglers
  frontend = serving.Frontend(
      serving.SharedQueuePool(base), np.full(_C, -1.0), code=code,
      parity_pools=[serving.SharedQueuePool([late]),
                    serving.SharedQueuePool([hung])], deadline_s=5.0)
  queries = _queries(k)
  answers = _serve(frontend, queries)
  expected_BK = _decoded(code, f, queries, [True] * k + [False] * r)
  for j, answer in enumerate(answers):
    assert answer.source == "reconstruction"  # Never F's own output.
    np.testing.assert_allclose(answer.output, expected_BK[:, j], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(answer.output, f(queries[j]), atol=1e-3)
    assert answer.latency_s < 0.01  # Not waiting for the stragglers.
  # The workers computed on the N coded queries, not on the queries.
  coded_BN = np.asarray(code.encode({}, np.stack(queries, 1)))
  seen = [x for i in base + [late, hung]  # base[0] also computed F(0).
          for x in i.inputs[1 if i is base[0] else 0:]]
  assert len(seen) == k + r
  for n in range(k + r):
    assert sum(np.allclose(x, coded_BN[:, n]) for x in seen) == 1
  assert dict(frontend.sent) == {"base": k, "hedge": 0, "parity": r}
  assert frontend.counts["reconstruction"] == k and frontend.systematic is False


def test_non_systematic_decodes_from_whichever_k_outputs_arrive_first():
  k, r = 2, 1
  code = jaxcc.codes.berrut(k, r, systematic=False)
  f = _f()
  # Base worker 0 and 1 take 1 ms and 5 ms, the parity worker 2 ms: the
  # decoder uses workers 0 and 2 (the frontend's pools are shared queues,
  # so which instance serves worker 0 follows dispatch order).
  fast, slow = _Recording(f, 1e-3), _Recording(f, 5e-3)
  frontend = serving.Frontend(
      serving.SharedQueuePool([fast, slow]), np.zeros(_C), code=code,
      parity_pools=[serving.SharedQueuePool([_Recording(f, 2e-3)])])
  queries = _queries(k, seed=2)
  answers = _serve(frontend, queries, gap_s=0.01)  # F(0) done first.
  coded_BN = np.asarray(code.encode({}, np.stack(queries, 1)))
  on_slow = [n for n in range(k) if any(np.allclose(x, coded_BN[:, n])
                                        for x in slow.inputs)]
  assert len(on_slow) == 1
  available_N = np.arange(k + r) != on_slow[0]
  expected_BK = _decoded(code, f, queries, available_N)
  for j, answer in enumerate(answers):
    np.testing.assert_allclose(answer.output, expected_BK[:, j], rtol=1e-5,
                               atol=1e-6)


def test_partial_non_systematic_group_is_padded_encoded_and_decoded():
  code = jaxcc.codes.berrut(2, 1, systematic=False)
  f = _f()
  frontend = serving.Frontend(
      serving.SharedQueuePool([_Recording(f) for _ in range(2)]),
      np.zeros(_C), code=code,
      parity_pools=[serving.SharedQueuePool([_Recording(f, 1.0)])],
      group_timeout_s=0.02)
  (x,) = _queries(1, seed=3)
  (answer,) = _serve(frontend, [x])
  expected_BK = _decoded(code, f, [x, np.zeros_like(x)], [True, True, False])
  assert answer.source == "reconstruction"
  np.testing.assert_allclose(answer.output, expected_BK[:, 0], rtol=1e-5,
                             atol=1e-6)
  assert 0.02 <= answer.latency_s < 0.03  # Sealed by the timeout.


def test_non_systematic_group_with_more_than_r_failures_gets_the_default():
  code = jaxcc.codes.berrut(2, 1, systematic=False)
  f = _f()

  class Failing(_Recording):
    def call(self, x_B, delay_s):
      future = asyncio.get_running_loop().create_future()
      future.set_exception(serving.InstanceFailed("crashed"))
      return future

  base = serving.SharedQueuePool([_Recording(f), Failing(f)])
  frontend = serving.Frontend(
      base, np.full(_C, -1.0), code=code, deadline_s=5.0,
      parity_pools=[serving.SharedQueuePool([Failing(f)])])
  answers = _serve(frontend, _queries(2, seed=4))
  assert [a.source for a in answers] == ["default", "default"]
  assert max(a.latency_s for a in answers) < 0.01  # Not at the deadline.


def test_a_hedged_copy_of_a_non_systematic_query_answers_as_original():
  code = jaxcc.codes.berrut(2, 1, systematic=False)
  f = _f()
  # Every coded worker is slow; the hedged copies (plain queries) are not.
  base = _Recording(f, 1.0)
  copies = _Recording(f, 1e-3)
  frontend = serving.Frontend(
      serving.SharedQueuePool([base, copies]), np.zeros(_C), code=code,
      parity_pools=[serving.SharedQueuePool([_Recording(f, 1.0)])],
      hedge_after_s=0.01)
  queries = _queries(2, seed=5)
  answers = _serve(frontend, queries)
  assert [a.source for a in answers] == ["original", "original"]
  for x, answer in zip(queries, answers):
    np.testing.assert_allclose(answer.output, f(x), rtol=1e-6)


@pytest.mark.parametrize("decodable", [True, False])
def test_a_failed_hedged_copy_in_a_non_systematic_group(decodable):
  """Both queries' hedged copies crash: the group's decoder still answers
  them, or, once the group cannot be decoded, the default does (when the
  copies fail, not at the deadline); every failed request is counted."""
  code = jaxcc.codes.berrut(2, 1, systematic=False)
  f = _f()
  # Base requests: start's F(0), coded workers 0 and 1, then the two copies
  # (sent at 10 ms, crashing 20 ms later). Undecodable: worker 0 and the
  # parity worker crash at 15 ms, while the copies are still out.
  crashed = {3, 4} if decodable else {1, 3, 4}
  base = _Scripted(f, [0.0, 0.05 if decodable else 0.015, 0.05, 0.02, 0.02],
                   failing=crashed)
  parity = _Scripted(f, [0.06 if decodable else 0.015],
                     failing=() if decodable else {0})
  frontend = serving.Frontend(base, np.full(_C, -1.0), code=code,
                              parity_pools=[parity], hedge_after_s=0.01,
                              deadline_s=5.0)
  queries = _queries(2, seed=8)
  answers = _serve(frontend, queries)
  latency_s = max(a.latency_s for a in answers)
  if decodable:
    expected_BK = _decoded(code, f, queries, [True, True, False])
    for j, answer in enumerate(answers):
      assert answer.source == "reconstruction"
      np.testing.assert_allclose(answer.output, expected_BK[:, j],
                                 rtol=1e-5, atol=1e-6)
    assert 0.045 < latency_s < 0.055  # Workers 0 and 1 answered.
  else:
    assert [a.source for a in answers] == ["default", "default"]
    np.testing.assert_array_equal(answers[0].output, np.full((2, _C), -1.0))
    assert 0.025 < latency_s < 0.035  # When the copies failed.
  assert dict(frontend.sent) == {"base": 2, "hedge": 2, "parity": 1}
  answered = frontend.counts["reconstruction"] + frontend.counts["default"]
  assert answered == 2 and frontend.counts["original"] == 0
  assert frontend.counts["failure"] == len(crashed) + (not decodable)


def test_systematic_berrut_still_answers_originals():
  code = jaxcc.codes.berrut(2, 1)
  f = _f()
  frontend = serving.Frontend(
      serving.SharedQueuePool([_Recording(f) for _ in range(2)]),
      np.zeros(_C), code=code,
      parity_pools=[serving.SharedQueuePool([_Recording(f, 2e-3)])])
  queries = _queries(2, seed=6)
  answers = _serve(frontend, queries)
  assert [a.source for a in answers] == ["original", "original"]
  assert frontend.systematic is True


def test_with_code_serves_f_on_every_worker_and_refuses_parity_model_codes():
  w = np.ones((_D, _C), np.float32)
  served = serving.with_code(serving.linear(w, 2, (_D,)),
                             jaxcc.codes.berrut(2, 1, systematic=False))
  assert served.parities == (served.base,) and not served.code.systematic
  with pytest.raises(ValueError, match="parity models"):
    serving.with_code(served, jaxcc.codes.summation(2))


@pytest.mark.slow
def test_sim_experiment_serves_approxifers_code(tmp_path):
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  times = tmp_path / "service_times.json"
  times.write_text("[0.002, 0.003, 0.004, 0.05]")
  config = serving_config.get_config(
      f"backend=sim,service_times={times},modes=parm,ks=2,num_base=2,"
      "num_queries=60,rate=100,code=berrut,berrut.systematic=false")
  assert not _experiment.sim_served(config, 2).code.systematic
  results = serving.run_experiment(config, str(tmp_path / "out"))
  (row,) = results["runs"]
  assert row["counts"]["reconstruction"] == 60 and row["instances"] == (2, 1)
  with pytest.raises(ValueError, match="'' .* or 'berrut'"):
    _experiment.code(serving_config.get_config("code=summation"), 2)


@pytest.mark.parametrize("maps", [False, True])
def test_coding_in_a_thread_gives_the_same_answers(maps):
  """Real time: a jitted encode and decode in a one-thread executor; a
  linear code's NumPy coding stays inline."""
  code = jaxcc.codes.berrut(2, 1, systematic=False)
  if not maps:
    code = code._replace(maps=None)
  f = _f()
  queries = _queries(6, seed=7)

  async def serve(executor):
    frontend = serving.Frontend(
        serving.SharedQueuePool([_Recording(f) for _ in range(2)]),
        np.zeros(_C), code=code, executor=executor,
        parity_pools=[serving.SharedQueuePool([_Recording(f, 0.05)])])
    await frontend.start((_D,))
    return await asyncio.wait_for(asyncio.gather(
        *(frontend.predict(x) for x in queries)), 30.0)

  class Counting(concurrent.futures.ThreadPoolExecutor):
    calls = 0

    def submit(self, fn, /, *args, **kwargs):
      Counting.calls += 1
      return super().submit(fn, *args, **kwargs)

  with Counting(1) as executor:
    threaded = asyncio.run(serve(executor))
  # 3 groups: an encode and a decode each, unless coded with NumPy inline.
  assert Counting.calls == (0 if maps else 3 + 3)
  inline = asyncio.run(serve(None))
  for a, b in zip(threaded, inline):
    assert a.source == b.source == "reconstruction"
    np.testing.assert_allclose(a.output, b.output, rtol=1e-6)


def test_build_system_wires_a_non_systematic_code():
  served = serving.with_code(
      serving.linear(np.ones((1, 1), np.float32), 2, (1,)),
      jaxcc.codes.berrut(2, 1, systematic=False))

  async def make_pool(factory, num_instances, intervals, seed):
    del intervals, seed
    return serving.SharedQueuePool(
        [_Recording(factory()) for _ in range(num_instances)])

  async def main():
    system = await _bench.build_system(
        served, make_pool, mode="parm", k=2, num_base=2,
        faults=serving.Faults(), seed=0, horizon_s=10.0, input_shape=(1,))
    answers = await asyncio.gather(*(system.frontend.predict(
        np.full((1, 1), v, np.float32)) for v in (1.0, 2.0)))
    await system.close()
    return answers, system

  answers, system = _simulator.simulate(main())
  assert [a.source for a in answers] == ["reconstruction"] * 2
  assert len(system.pools) == 2 and system.frontend.systematic is False


def all_patterns(k, r) -> np.ndarray:
  """Every `(k+r,)` mask with at most r outputs missing."""
  return np.array([p for p in itertools.product([True, False], repeat=k + r)
                   if p.count(False) <= r])


LINEAR_CODES = {
    "summation": lambda: jaxcc.codes.summation(3),
    "linear": lambda: jaxcc.codes.linear(3, 2),
    "berrut": lambda: jaxcc.codes.berrut(2, 2),
    "approxifer": lambda: jaxcc.codes.berrut(3, 2, systematic=False),
    "spline": lambda: jaxcc.codes.spline(3, 2),
}


@pytest.mark.parametrize("name", sorted(LINEAR_CODES))
def test_host_coder_equals_the_codes_own_functions(name):
  code = LINEAR_CODES[name]()
  host = _coding.coder(code, {})
  assert isinstance(host, _coding.Host)
  n = code.k + code.r
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, code.k, 4, 2)).astype(np.float32)
  coded = host.encode(x)
  assert coded.dtype == np.float32
  np.testing.assert_allclose(coded, code.encode({}, x), atol=1e-5)
  y = rng.normal(size=(3, n, 5)).astype(np.float32)
  for available_N in all_patterns(code.k, code.r):
    garbage = np.where(available_N[None, :, None], y, np.nan)  # Never read.
    np.testing.assert_allclose(host.decode(garbage, available_N),
                               code.decode({}, y, available_N), atol=2e-5)


class _Scripted:
  """A pool computing `fn`; its i-th request answers after `delays_s[i]`
  (None: never), or fails then (its instance crashed) if i is in
  `failing`."""

  def __init__(self, fn, delays_s, failing=()):
    self.fn, self.delays_s, self.failing = fn, list(delays_s), set(failing)
    self.calls = 0

  def submit(self, x_B):
    future = asyncio.get_running_loop().create_future()
    delay_s, fails = self.delays_s[self.calls], self.calls in self.failing
    self.calls += 1
    if delay_s is not None:
      asyncio.get_running_loop().call_later(
          delay_s, lambda: future.done() or (
              future.set_exception(serving.InstanceFailed("crashed")) if fails
              else future.set_result(self.fn(x_B))))
    return future


def test_frontend_decodes_each_pattern_with_its_own_matrix():
  """A linear F and linear(2, 2): five groups, each with a different pair of
  outputs that ever arrive, so each needs a different decoding matrix; every
  missing output is rebuilt exactly."""
  w = np.random.default_rng(3).normal(size=(_D, _C)).astype(np.float32)
  f = lambda x: x.reshape(len(x), -1) @ w
  arrive = [(1, 2), (0, 3), (1, 3), (2, 3), (0, 2)]  # Outputs that arrive.
  delays = [[1e-3 if n in a else None for a in arrive] for n in range(4)]
  data_delays = [0.0] + [d for pair in zip(*delays[:2]) for d in pair]
  base = _Scripted(f, data_delays)  # The first request is start's F(0).
  parities = [_Scripted(f, delays[2]), _Scripted(f, delays[3])]
  queries = _queries(10, seed=4)
  frontend = serving.Frontend(base, np.zeros(_C),
                              code=jaxcc.codes.linear(2, 2),
                              parity_pools=parities)
  predictions = _serve(frontend, queries, gap_s=1e-2)
  assert isinstance(frontend._coder, _coding.Host)
  for i, (x, p) in enumerate(zip(queries, predictions)):
    arrived = i % 2 in arrive[i // 2]
    assert p.source == ("original" if arrived else "reconstruction"), i
    np.testing.assert_allclose(p.output, f(x), rtol=1e-4, atol=1e-4)


def test_maps_left_stale_by_a_replaced_encode_are_refused_at_start():
  code = jaxcc.codes.summation(2)
  stale = code._replace(encode=lambda params, x_BK: 2 * code.encode(
      params, x_BK))
  frontend = serving.Frontend(_Scripted(lambda x: x, [0.0]), np.zeros(_D),
                              code=stale,
                              parity_pools=[_Scripted(lambda x: x, [])])
  with pytest.raises(ValueError, match="maps disagree with its own encode"):
    asyncio.run(frontend.start((_D,)))
