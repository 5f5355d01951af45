"""The Ray Serve backend answers coded queries end to end on this machine."""

import concurrent.futures
import signal
import socket

import numpy as np
import pytest

from jaxcc import serving

pytest.importorskip("ray.serve", reason="the Ray backend needs ray[serve]")
from jaxcc.serving import ray_backend  # pylint: disable=g-import-not-at-top

_TIMEOUT_S = 300


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _on_alarm(signum, frame):
  raise TimeoutError(f"the Ray test took over {_TIMEOUT_S} s")


def _queries(seed):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(1, 6)).astype(np.float32) for _ in range(5)]


# Ray starts its processes by fork + exec, which is safe with JAX's threads.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.slow
def test_ray_serve_backend_end_to_end():
  w = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
  served = serving.linear(w, 2, (6,))
  previous = signal.signal(signal.SIGALRM, _on_alarm)
  signal.alarm(_TIMEOUT_S)
  try:
    url = ray_backend.run(ray_backend.application(
        served, num_base=2, num_parity=1, group_timeout_s=0.05,
        deadline_s=10.0), port=_free_port(), num_cpus=2)

    def client_run(seed):
      client = serving.Client(url)
      answers = [(x, client.predict(x, binary=i % 2 == 0))
                 for i, x in enumerate(_queries(seed))]
      client.close()
      return answers

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      runs = list(pool.map(client_run, [1, 2]))
    for x, answer in (pair for run in runs for pair in run):
      assert answer["source"] in ("original", "reconstruction")
      np.testing.assert_allclose(answer["outputs"], x @ w, rtol=1e-5,
                                 atol=1e-5)
    client = serving.Client(url)
    with pytest.raises(serving.HttpError, match="expected shape") as error:
      client.predict(np.zeros((2, 2), np.float32))
    assert error.value.status == 400
    stats = client.stats()
    assert sum(stats[s] for s in serving.SOURCES) == 10
    client.close()
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    ray_backend.shutdown()
