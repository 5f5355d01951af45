"""Batch sizing against a latency objective (AIMD), and Ray's batching."""

import asyncio

import numpy as np
import pytest

import _serving_fakes as fakes
from jaxcc import serving
from jaxcc.serving import _batching
from jaxcc.serving import _simulator


def test_aimd_grows_on_full_calls_within_the_slo_and_backs_off_above_it():
  sizer = _batching.AimdSizer(8, slo_s=0.01)
  caps = [sizer.rows()]
  for _ in range(9):  # Full calls within the objective: +1 up to 8.
    sizer.observe(sizer.rows(), 0.005)
    caps.append(sizer.rows())
  assert caps == [1, 2, 3, 4, 5, 6, 7, 8, 8, 8]
  sizer.observe(2, 0.005)  # Below the cap: says nothing about 9 rows.
  assert sizer.rows() == 8
  caps = []
  for _ in range(9):  # Misses: -10 %, rounded down, never below 1.
    sizer.observe(sizer.rows(), 0.02)
    caps.append(sizer.rows())
  assert caps == [7, 6, 5, 4, 3, 2, 1, 1, 1]
  sizer.observe(1, 0.005)
  sizer.observe(1, 0.005)  # Below the cap of 2 rows: no growth.
  assert sizer.rows() == 2
  big = _batching.AimdSizer(64, slo_s=0.01, step=4)
  for _ in range(20):
    big.observe(64, 0.001)
  assert big.rows() == 64
  big.observe(64, 0.011)
  assert big.rows() == 57


def test_sizer_without_an_slo_is_fixed_and_bad_settings_are_rejected():
  fixed = _batching.sizer(8)
  fixed.observe(8, 100.0)
  assert type(fixed) is _batching.FixedSizer and fixed.rows() == 8
  assert type(_batching.sizer(8, 0.01)) is _batching.AimdSizer
  for kwargs in ({"slo_s": 0.0}, {"slo_s": 0.01, "backoff": 1.0},
                 {"slo_s": 0.01, "step": 0}):
    with pytest.raises(ValueError, match="slo_s > 0"):
      _batching.AimdSizer(8, **kwargs)
  with pytest.raises(ValueError, match="max_rows"):
    _batching.sizer(0, 0.01)
  with pytest.raises(ValueError, match="max_rows"):
    serving.SharedQueuePool([], max_rows=0)


class _RowCost(fakes.Instance):
  """`flatten(x) @ W` after 0.5 ms plus `per_row_s` per row; records
  (rows, service time) of each call."""

  def __init__(self, per_row_s):
    super().__init__()
    self.per_row_s, self.calls = per_row_s, []

  def call(self, x_B, delay_s):
    self.service_s = 5e-4 + self.per_row_s * len(x_B)
    self.calls.append((len(x_B), self.service_s))
    return super().call(x_B, delay_s)


def _flood(batch_slo_s, num_queries=1000):
  """Two instances, one twice as slow per row, and `num_queries` queued at
  once; their calls and every answer's error against the model."""
  fast, slow = _RowCost(1e-3), _RowCost(2e-3)
  pool = serving.SharedQueuePool([fast, slow], max_rows=16,
                                 batch_slo_s=batch_slo_s)
  rng = np.random.default_rng(0)
  queries = [rng.normal(size=(1, 6)).astype(np.float32)
             for _ in range(num_queries)]

  async def scenario():
    return await asyncio.gather(*(pool.submit(x) for x in queries))

  results = _simulator.simulate(scenario())
  error = max(np.abs(y - x @ fakes.W).max() for x, y in zip(queries, results))
  return fast.calls, slow.calls, pool.stats(), error


def test_pool_settles_each_instance_at_the_rows_its_slo_allows():
  slo_s = 6e-3  # Fast: 5 rows take 5.5 ms, 6 take 6.5. Slow: 2 and 3 rows.
  fast, slow, stats, error = _flood(slo_s)
  assert error < 1e-5  # Every query got its own rows back.
  for calls, fits in ((fast, 5), (slow, 2)):
    rows = [r for r, _ in calls[10:-1]]  # Settled (and not the last call).
    assert set(rows) == {fits, fits + 1}  # The sawtooth: fits, one probe.
    assert max(r for r, _ in calls) == fits + 1  # Never further above.
  assert [r for r, _ in fast[:6]] == [1, 2, 3, 4, 5, 6]  # +1 from one row.
  assert set(stats["row_caps"]) <= {2, 3, 5, 6}
  assert stats["started"] == 1000 and stats["calls"] == len(fast + slow)


def test_pool_without_an_slo_fills_every_call_as_before():
  fast, slow, stats, error = _flood(None)
  assert error < 1e-5
  # The first two queries go alone (the queue held one), then calls of 16
  # rows drain the other 998, the last one 6.
  assert sorted(r for r, _ in fast + slow) == [1, 1, 6] + [16] * 62
  assert stats["row_caps"] == [16, 16]


@pytest.mark.slow  # Importing Ray Serve takes about 3 s.
def test_ray_replica_batches_rows_padded_to_buckets_without_ray():
  """The replica's batch handler, called as `@serve.batch` would call it,
  on an instance made outside Ray."""
  ray_backend = pytest.importorskip("jaxcc.serving.ray_backend",
                                    reason="the Ray backend needs ray[serve]")
  shapes = []

  def factory():
    def fn(x_B):
      shapes.append(x_B.shape)
      return x_B.reshape(len(x_B), -1) @ fakes.W
    return fn

  replica_class = ray_backend.ModelInstance.func_or_class
  replica = replica_class(factory, np.zeros((1, 6), np.float32), 8,
                          batch_slo_s=10.0)
  assert shapes == [(1, 6), (2, 6), (4, 6), (8, 6)]  # Compiled at start.
  rng = np.random.default_rng(0)
  xs = [rng.normal(size=(b, 6)).astype(np.float32) for b in (1, 2, 2)]
  ys = replica.predict(xs)  # What `@serve.batch` hands it: queued requests.
  assert shapes[4:] == [(8, 6)]  # One call: 5 rows padded to 8.
  for x, y in zip(xs, ys):
    np.testing.assert_allclose(y, x @ fakes.W, rtol=1e-6)
  # AIMD from one row: a full call well within 10 s grows the cap.
  assert replica.__call__._get_max_batch_size() == 2
  assert ray_backend._rows(xs) == 5 and ray_backend._rows(xs[1:2]) == 1
