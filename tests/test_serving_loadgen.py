"""The load generator against the in-process HTTP server (fast)."""

import asyncio

import numpy as np
import pytest

import _serving_fakes as fakes
from jaxcc import serving
from jaxcc.serving import _loadgen



def _load(service_s, num_instances=2, max_connections=256, **load):
  """Runs the load generator against a plain frontend over HTTP."""
  rng = np.random.default_rng(1)
  inputs = [rng.normal(size=(1, 6)).astype(np.float32) for _ in range(10)]

  async def scenario():
    frontend = serving.Frontend(serving.SharedQueuePool(
        [fakes.Instance(service_s) for _ in range(num_instances)]), np.zeros(4))
    endpoint = serving.Endpoint(frontend.predict, (6,), np.float32,
                                lambda: dict(frontend.counts))
    server = await serving.serve_http(endpoint,
                                      max_connections=max_connections)
    try:
      return await _loadgen.run(f"http://127.0.0.1:{server.port}",
                                [fakes.npy(x) for x in inputs], **load)
    finally:
      server.close()

  return inputs, asyncio.run(scenario())


def test_answers_latency_summary_and_histogram():
  inputs, result = _load(1e-3, rate=400.0, num_requests=200, connections=8)
  assert result.outcomes == ["200"] * 200
  for i, answer in enumerate(result.answers):
    np.testing.assert_allclose(answer["outputs"], inputs[i % 10] @ fakes.W,
                               rtol=1e-5, atol=1e-5)
  summary = _loadgen.summary(result)
  assert (summary["requests"], summary["ok"], summary["errors"]) == (200, 200,
                                                                     0)
  assert summary["sources"] == {"original": 200}
  assert (1.0 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["p99.9_ms"]
          <= summary["max_ms"])
  assert 100 < summary["answered_per_s"] < 800  # About the offered 400/s.
  bins = _loadgen.histogram(result.latencies_s)
  assert sum(count for _, count in bins) == 200
  assert bins[-1][0] >= summary["max_ms"] > bins[-2][0]


def test_open_loop_latency_counts_queueing_and_waits_for_a_connection():
  # 20 arrivals in about 0.1 s at one 50 ms instance over 2 connections: a
  # closed-loop client would see about 50 ms each; the queue shows here.
  _, result = _load(0.05, num_instances=1, rate=200.0, num_requests=20,
                    connections=2)
  assert result.outcomes == ["200"] * 20
  assert np.median(result.latencies_s) > 0.2
  assert result.latencies_s.max() > 0.6


def test_errors_are_counted_by_kind():
  _, refused = _load(0.2, max_connections=2, rate=1000.0, num_requests=10,
                     connections=10)
  summary = _loadgen.summary(refused)
  assert summary["outcomes"]["503"] >= 1 and summary["outcomes"]["200"] >= 2
  assert summary["errors"] == summary["outcomes"]["503"]
  assert np.isfinite(refused.latencies_s).sum() == 10  # 503s are answers too.
  _, late = _load(0.2, rate=100.0, num_requests=4, connections=4,
                  timeout_s=0.05)
  assert late.outcomes == ["timeout"] * 4
  assert np.isnan(late.latencies_s).all() and _loadgen.histogram(
      late.latencies_s) == []


def test_bad_arguments_are_rejected():
  with pytest.raises(ValueError, match="rate > 0"):
    asyncio.run(_loadgen.run("http://127.0.0.1:1", [b""], rate=0.0,
                             num_requests=1))
  with pytest.raises(ValueError, match="http://host:port"):
    asyncio.run(_loadgen.run("127.0.0.1:8000", [b""], rate=1.0,
                             num_requests=1))
