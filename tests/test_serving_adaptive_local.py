"""The "adaptive" mode on instances that hold F and the parity model.

A request to such an instance names its model (`_bench.ModelRequest`).
Tests that start worker processes (each imports JAX) are slow.
"""

import asyncio
import types

import numpy as np
import pytest

from jaxcc import serving
from jaxcc.serving import _bench
from jaxcc.serving import _experiment
from jaxcc.serving import _simulator

_D, _C = 6, 4
_W = np.random.default_rng(0).normal(size=(_D, _C)).astype(np.float32)


def _queries(n, seed=1):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(1, _D)).astype(np.float32) for _ in range(n)]


class _TwoModels:
  """An in-process instance holding two models, both `x @ W`; it records
  which model each call was for."""
  alive = True

  def __init__(self, models):
    self.models = models

  def call(self, x_B, delay_s):
    del delay_s  # No faults injected.
    model = 0
    if isinstance(x_B, _bench.ModelRequest):
      x_B, model = x_B.x_B, x_B.model
    self.models.append(model)
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_later(1e-3, future.set_result, x_B.reshape(len(x_B), -1) @ _W)
    return future


def test_adaptive_mode_sends_parities_to_the_parity_model():
  """The frontend's parity requests name model 1 of the shared instances;
  its queries go bare, to model 0."""
  base = serving.linear(_W, 2, (_D,))
  # A distinct factory: the instances hold two models.
  served = base._replace(parities=(serving.linear_model(_W),))
  models, factories = [], []

  async def make_pool(factory, num_instances, intervals, seed):
    del intervals, seed
    factories.append(factory)
    return serving.SharedQueuePool(
        [_TwoModels(models) for _ in range(num_instances)])

  async def main():
    system = await serving.build_system(
        served, make_pool, mode="adaptive", k=2, num_base=2,
        faults=serving.Faults(), seed=0, horizon_s=10.0,
        input_shape=(_D,), hedge_after_s=1.0)
    try:
      queries = _queries(20)
      answers = await _bench.poisson_load(system.frontend.predict, queries,
                                          50.0, 0)
      return queries, answers, system.frontend
    finally:
      await system.close()

  queries, answers, frontend = _simulator.simulate(main())
  assert factories == [(served.base, served.parities[0])]  # One pool.
  for x, answer in zip(queries, answers):
    assert answer.source != "default"
    np.testing.assert_allclose(answer.output, x @ _W, rtol=1e-5, atol=1e-5)
  assert models.count(1) == frontend.sent["parity"] == 10  # One per group.
  assert models.count(0) == frontend.sent["base"] + 1  # F(0) at start.


@pytest.mark.slow
def test_a_dual_worker_answers_each_model_and_refuses_an_unknown_one():
  """One worker holding F = x @ W and F_P = x @ -W: a bare request runs F,
  a `ModelRequest` the model it names; queued requests for different models
  (same shape) are not batched together."""
  factories = (serving.linear_model(_W), serving.linear_model(-_W))
  x_B = np.concatenate(_queries(3))

  async def main():
    pool = await serving.LocalPool.create(
        factories, np.zeros((1, _D), np.float32), 1, max_batch=4)
    try:
      requests = [pool.submit(x_B), pool.submit(_bench.ModelRequest(x_B, 1)),
                  pool.submit(_bench.ModelRequest(x_B, 0)),
                  pool.submit(_bench.ModelRequest(x_B[:1], 1))]
      answers = await asyncio.wait_for(asyncio.gather(*requests), 60.0)
      with pytest.raises(ValueError, match="model 2: worker .* holds models "
                         "0 to 1"):
        await asyncio.wait_for(pool.submit(_bench.ModelRequest(x_B, 2)), 60.0)
      after = await asyncio.wait_for(pool.submit(_bench.ModelRequest(x_B, 1)),
                                     60.0)
      return answers, after, pool.stats()
    finally:
      await pool.close()

  (f, parity, f_again, parity_row), after, stats = asyncio.run(main())
  np.testing.assert_allclose(f, x_B @ _W, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(parity, x_B @ -_W, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(f_again, x_B @ _W, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(parity_row, x_B[:1] @ -_W, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(after, x_B @ -_W, rtol=1e-5, atol=1e-5)
  assert stats["live"] == 1 and stats["started"] == 6


@pytest.mark.slow
def test_local_experiment_serves_the_adaptive_mode(tmp_path, monkeypatch):
  """serve_bench's local backend with modes=adaptive: 2 + 1 workers each
  holding F and F_P answer every query. F_P = x @ -W is no parity model of
  the summation code, so that an original computed by the wrong model
  shows: labels are F's argmax, and every original must match them."""
  from configs import serving as serving_config  # pylint: disable=g-import-not-at-top
  served = serving.linear(_W, 2, (_D,))._replace(
      parities=(serving.linear_model(-_W),))
  images = np.concatenate(_queries(40))
  dataset = types.SimpleNamespace(test=types.SimpleNamespace(
      image=images, label=(images @ _W).argmax(1)))
  monkeypatch.setattr(_experiment, "served_system",
                      lambda config, k: (served, dataset))
  config = serving_config.get_config(
      "backend=local,modes=adaptive,ks=2,num_base=2,num_queries=60,"
      "calibration_queries=30,rate=50,faults.process=none")
  (row,) = serving.run_experiment(config, str(tmp_path))["runs"]
  counts = row["counts"]
  assert row["instances"] == (3, 0)
  assert sum(counts[s] for s in serving.SOURCES) == 60
  assert counts["failure"] == 0 and counts["original"] >= 1
  assert row["accuracy"]["original"] == 1.0
  assert sum(row["decisions"].values()) == 60
  assert row["sent"]["parity"] >= 1
