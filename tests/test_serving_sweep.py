"""ParM + hedging, the adaptive policy and the utilisation sweep (fast)."""

import asyncio
import json

import numpy as np
import pytest

import jaxcc
from jaxcc import serving
from jaxcc.serving import _bench
from jaxcc.serving import _experiment
from jaxcc.serving import _simulator


class _Scripted:
  """An instance whose calls, across all `_Scripted` sharing `script`, take
  the scripted `(delay_s, fails)` in dispatch order (then 1 ms, answered)."""
  alive = True

  def __init__(self, fn, script):
    self.fn, self.script = fn, script
    self.calls = 0

  def call(self, x_B, delay_s):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    wait, fails = self.script.pop(0) if self.script else (1e-3, False)
    self.calls += 1
    if fails:
      loop.call_later(wait + delay_s, future.set_exception,
                      serving.InstanceFailed("crashed"))
    else:
      loop.call_later(wait + delay_s, future.set_result, self.fn(x_B))
    return future


def _linear_f(d=6, c=4):
  w = np.random.default_rng(0).normal(size=(d, c)).astype(np.float32)
  return lambda x: (x.reshape(len(x), -1) @ w).astype(np.float32)


def _coded_hedged(base_script, parity_script, hedge_after_s, num_base=3):
  """Two queries 1 ms apart through a k = 2 coded and hedged frontend."""
  f = _linear_f()
  base = serving.SharedQueuePool(
      [_Scripted(f, base_script) for _ in range(num_base)])
  parity = serving.SharedQueuePool([_Scripted(f, parity_script)])
  frontend = serving.Frontend(base, np.full(4, -1.0), parity_pools=[parity],
                              code=jaxcc.codes.summation(2),
                              hedge_after_s=hedge_after_s, deadline_s=5.0)
  queries = [np.random.default_rng(i).normal(size=(1, 6)).astype(np.float32)
             for i in range(2)]

  async def serve():
    await frontend.start((6,))
    first = asyncio.create_task(frontend.predict(queries[0]))
    await asyncio.sleep(1e-3)
    return await asyncio.gather(first, frontend.predict(queries[1]))

  answers = _simulator.simulate(serve())
  return [f(x) for x in queries], answers, frontend, base


# Base calls in dispatch order: F(0) at start, query 0, query 1, copies.
FAST = (1e-3, False)


def test_parm_hedged_copy_wins_when_the_group_cannot_decode_in_time():
  exact, answers, frontend, _ = _coded_hedged(
      [FAST, (1.0, False), FAST, FAST], [(1.0, False)], hedge_after_s=0.01)
  assert [a.source for a in answers] == ["original", "original"]
  np.testing.assert_allclose(answers[0].output, exact[0], rtol=1e-5)
  assert answers[0].latency_s == pytest.approx(0.011)  # The copy.
  assert frontend.sent == {"base": 2, "hedge": 1, "parity": 1}


def test_parm_hedged_reconstruction_wins_before_the_hedge():
  exact, answers, frontend, _ = _coded_hedged(
      [FAST, (1.0, False), FAST], [FAST], hedge_after_s=0.01)
  assert answers[0].source == "reconstruction"
  np.testing.assert_allclose(answers[0].output, exact[0], rtol=1e-5,
                             atol=1e-5)
  assert answers[0].latency_s == pytest.approx(0.002)  # Before the copy.
  assert frontend.sent["hedge"] == 0


def test_parm_hedged_failed_original_waits_for_its_pending_copy():
  # The parity is lost, then query 0's original fails (at 20 ms) after its
  # copy was sent (at 10 ms): the group cannot decode, but the copy answers.
  exact, answers, frontend, _ = _coded_hedged(
      [FAST, (0.02, True), FAST, (0.015, False)], [(0.0, True)],
      hedge_after_s=0.01)
  assert answers[0].source == "original"
  np.testing.assert_allclose(answers[0].output, exact[0], rtol=1e-5)
  assert answers[0].latency_s == pytest.approx(0.025)  # Not a default.
  assert frontend.counts["failure"] == 2 and frontend.counts["default"] == 0


def test_pool_counts_started_requests_and_frontend_counts_sent():
  _, _, frontend, base = _coded_hedged(
      [FAST, (1.0, False), FAST, (0.5, False)], [(1.0, False)],
      hedge_after_s=0.01, num_base=4)
  # F(0), two originals and one copy began; the parity was sent too.
  assert base.stats()["started"] == 4 and base.started == 4
  assert sum(frontend.sent.values()) == 4


class _FakePool:

  def __init__(self, service_s, live):
    self.service_s, self.live = service_s, live

  def stats(self):
    return {"live": self.live}


def test_adaptive_estimates_load_and_stops_and_resumes_coding():
  pool = _FakePool([1e-3] * 50 + [3e-3] * 50, live=10)  # mean 2 ms
  policy = serving.Adaptive(pool, hedge_after_s=0.5, redundancy=0.5,
                            code_below=0.8, hysteresis=0.1, hedge_below=0.9,
                            window=100, every=10)
  assert policy.choose(0.0) == (True, 0.5)  # No estimate yet.
  t = 0.0
  for _ in range(100):  # 2,000 queries/s: rho = 2000 * 2 ms / 10 = 0.4.
    t += 5e-4
    policy.arrived(t)
  assert policy.utilisation == pytest.approx(0.4)
  # 0.4 * 1.5 = 0.6 < 0.8: code; 0.6 < 0.9: hedge after the p95 (3 ms).
  assert policy.choose(t) == (True, pytest.approx(3e-3))
  for _ in range(100):  # 3,500/s: rho = 0.7, with parities 1.05 > 0.8.
    t += 1 / 3500
    policy.arrived(t)
  assert policy.utilisation == pytest.approx(0.7)
  assert policy.choose(t) == (False, pytest.approx(3e-3))  # 0.7 < 0.9
  for _ in range(100):  # 2,500/s: rho = 0.5, with parities 0.75: in band.
    t += 4e-4
    policy.arrived(t)
  assert policy.choose(t)[0] is False
  for _ in range(100):  # 2,000/s: 0.6 < 0.8 - 0.1: coding resumes.
    t += 5e-4
    policy.arrived(t)
  assert policy.choose(t)[0] is True
  for _ in range(100):  # 5,000/s: rho = 1.0, no hedging either.
    t += 2e-4
    policy.arrived(t)
  assert policy.choose(t) == (False, None)
  assert policy.decisions == {"code+hedge": 3, "plain+hedge": 2, "plain": 1}


def test_adaptive_rejects_bad_options():
  with pytest.raises(ValueError, match="hedge_quantile"):
    serving.Adaptive(_FakePool([], 1), hedge_after_s=0.1, redundancy=0.5,
                     hedge_quantile=1.5)


def _sim_run(mode, rate, n=600, seed=0, **adaptive):
  service_s = np.random.default_rng(0).gamma(4.0, 2.5e-4, 500) + 5e-4
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  config = serving_config.get_config("faults.rate=1,faults.duration_s=0.02")
  served = serving.linear(np.zeros((1, 1)), 2, (1,))
  return _simulator.simulate(_bench.run_mode(
      mode, served, _experiment.sim_pool_maker(config, service_s),
      [np.zeros((1, 1), np.float32)] * n, rate=rate, seed=seed, k=2,
      num_base=4, faults=serving.Faults(**config.faults),
      group_timeout_s=0.02,
      hedge_after_s=float(np.quantile(service_s, 0.95)),
      adaptive=dict(window=200, every=50, **adaptive)))


def test_adaptive_mode_codes_at_low_load_and_not_at_high_load():
  # 4 + 2 instances serving both models, mean service 1.5 ms: capacity of
  # the 4 base instances 2,667 queries/s.
  low = _sim_run("adaptive", rate=500.0)
  assert low.decisions["code+hedge"] > 0.9 * 600
  assert low.counts["reconstruction"] > 0
  assert 1.45 < (low.sent["base"] + low.sent["parity"]) / 600 < 1.55
  # 2,600/s on 6 instances: rho 0.65, with parities 0.98 > 0.85.
  high = _sim_run("adaptive", rate=2600.0)
  assert high.decisions["plain+hedge"] > 0.7 * 600
  for run in (low, high):
    assert sum(run.counts[s] for s in serving.SOURCES) == 600
    assert run.counts["default"] == 0


def test_sweep_writes_results_plot_and_table(tmp_path):
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  config = serving_config.get_config(
      "backend=sim,loads=0.3+0.8,ks=2,num_base=2,num_queries=300,"
      "modes=none+hedged+parm+adaptive,source_accuracy=0.9+0.8+0.1")
  results = serving.run_sweep(config, str(tmp_path))
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["runs"] == json.loads(json.dumps(results["runs"]))
  assert (tmp_path / "sweep.png").exists()
  rows = {(r["mode"], r["load"]): r for r in saved["runs"]}
  assert len(rows) == 8
  assert saved["capacity_qps"] == pytest.approx(
      2 / (np.exp(0.45 ** 2 / 2) * 1.11e-3), rel=0.02)
  parm = rows[("parm", 0.3)]["requests_per_query"]
  assert parm["sent"] == pytest.approx(1.5, abs=0.01)
  assert rows[("none", 0.8)]["requests_per_query"]["sent"] == 1.0
  assert rows[("hedged", 0.8)]["requests_per_query"]["hedges"] > 0
  for row in saved["runs"]:  # Served accuracy from the answers' sources.
    served = row["served"]
    assert sum(served.values()) == pytest.approx(1.0)
    assert served["reconstruction"] == row["counts"]["reconstruction"] / 300
    assert row["served_accuracy"] == pytest.approx(
        0.9 * served["original"] + 0.8 * served["reconstruction"]
        + 0.1 * served["default"])
  assert rows[("none", 0.3)]["served"]["reconstruction"] == 0
  assert rows[("parm", 0.3)]["served"]["reconstruction"] > 0
  table = serving.sweep_table(results["runs"]).splitlines()
  for load in ("30%", "80%"):  # The best p99.9 of each load in bold.
    assert any("**" in line for line in table if f"| {load} |" in line)
  assert any(line.startswith("| 2 | 30% | adaptive | 3 serving both |")
             for line in table)
  coded = rows[("parm", 0.3)]
  assert any(line.startswith("| 2 | 30% | parm |") and
             f"| {100 * coded['served']['original']:.1f}% / " in line and
             f"| {100 * coded['served_accuracy']:.2f}% |" in line
             for line in table)
  pivot = serving.sweep_pivot(results["runs"]).splitlines()
  assert pivot[0] == ("| k | load | none | hedged | parm | adaptive | "
                      "adaptive / best fixed |")
  p999 = {m: rows[(m, 0.8)]["latency_ms"]["p99.9"] for m in
          ("none", "hedged", "parm", "adaptive")}
  ratio = p999["adaptive"] / min(p999["none"], p999["hedged"], p999["parm"])
  assert pivot[3] == ("| 2 | 80% | " + " | ".join(
      f"{v:.2f}" for v in p999.values()) + f" | {ratio:.2f} |")


def test_served_accuracy_weights_each_source_by_its_accuracy():
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  from jaxcc.serving import _sweep  # pylint: disable=g-import-not-at-top
  accuracy = _sweep.source_accuracy(
      serving_config.get_config("source_accuracy=0.9+0.8+0.1"))
  assert accuracy == {"original": 0.9, "reconstruction": 0.8, "default": 0.1}
  served = {"original": 0.5, "reconstruction": 0.3, "default": 0.2}
  assert _sweep.implied_accuracy(served, accuracy) == pytest.approx(
      0.45 + 0.24 + 0.02)
  assert _sweep.implied_accuracy(served, None) is None


def test_sweep_needs_the_simulator_and_valid_options(tmp_path):
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="simulated"):
    serving.run_sweep(serving_config.get_config("loads=0.5"), str(tmp_path))
  with pytest.raises(ValueError, match="source_accuracy must be"):
    serving.run_sweep(serving_config.get_config(
        "backend=sim,loads=0.5,source_accuracy=0.9+0.8"), str(tmp_path))
  with pytest.raises(ValueError, match="loads must lie"):
    serving.run_sweep(serving_config.get_config("backend=sim,loads=0.5+1.2"),
                      str(tmp_path))
