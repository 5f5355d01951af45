"""The HTTP endpoint: answers, and clear 4xx errors that disturb nobody."""

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest

import _serving_fakes as fakes
import jaxcc
from jaxcc import serving

_SHAPE = (2, 3)


def _post(body, content_type, extra=""):
  return (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}"
          f"\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


_IMAGE = np.arange(6, dtype=np.uint8).reshape(_SHAPE)
_BAD = [  # (raw request, expected status, expected words in the error)
    (_post(fakes.npy(np.zeros((3, 3), np.uint8)), "application/x-npy"), 400,
     "expected shape"),
    (_post(fakes.npy(np.zeros(_SHAPE, np.float32)), "application/x-npy"), 400,
     "expected dtype uint8"),
    (_post(fakes.npy(np.zeros((9,) + _SHAPE, np.uint8)), "application/x-npy"),
     400, "B <= 8"),
    (_post(b"\x93NUMPY garbage", "application/x-npy"), 400, "not a .npy"),
    (_post(b"{not json", "application/json"), 400, "must be JSON"),
    (_post(b'{"inputs": [[1.5, 2, 3], [4, 5, 6]]}', "application/json"), 400,
     "expected integers"),
    (_post(b'{"inputs": [[1, 2, 300], [4, 5, 6]]}', "application/json"), 400,
     "expected integers"),
    (_post(b'{"inputs": [[1, 2], [4, 5, 6]]}', "application/json"), 400,
     "must be JSON"),
    (_post(b'{"inputs": "abc"}', "application/json"), 400, "numbers"),
    (_post(b"1,2,3", "text/csv"), 415, "Content-Type"),
    (b"POST /predict HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413,
     "exceeds"),
    (b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", 411,
     "Content-Length"),
    (b"GET /predict HTTP/1.1\r\n\r\n", 405, "takes POST"),
    (b"GET /nowhere HTTP/1.1\r\n\r\n", 404, "no endpoint"),
    (b"HELLO\r\n\r\n", 400, "malformed request line"),
    (b"GET /stats HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n", 400,
     "too many header lines"),
]


def _exchange(port, raw):
  """Sends raw bytes on a fresh connection; `(status, JSON answer)`."""
  with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
      data += chunk
  head, _, body = data.partition(b"\r\n\r\n")
  return int(head.split()[1]), json.loads(body)


def _good_client(url, images):
  """A client whose keep-alive connection also meets one bad request."""
  client = serving.Client(url)
  answers = []
  for i, image in enumerate(images):
    if i == len(images) // 2:
      with pytest.raises(serving.HttpError, match="expected dtype"):
        client.predict(image.astype(np.int64))
    answers.append(client.predict(image, binary=i % 2 == 0))
  stats = client.stats()
  client.close()
  return answers, stats


def test_bad_requests_get_4xx_and_do_not_disturb_other_queries():
  frontend = serving.Frontend(
      serving.SharedQueuePool([fakes.Instance(), fakes.Instance()]),
      np.zeros(4),
      code=jaxcc.codes.summation(2),
      parity_pools=[serving.SharedQueuePool([fakes.Instance()])],
      group_timeout_s=0.01)
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, size=_SHAPE, dtype=np.uint8)
            for _ in range(30)]

  async def scenario():
    await frontend.start(_SHAPE)
    endpoint = serving.Endpoint(
        lambda x: frontend.predict(x.astype(np.float32)), _SHAPE, np.uint8,
        lambda: dict(frontend.counts), max_batch=8)
    server = await serving.serve_http(endpoint)
    port = server.sockets[0].getsockname()[1]
    try:
      return await asyncio.wait_for(asyncio.gather(
          asyncio.to_thread(_good_client, f"http://127.0.0.1:{port}", images),
          *(asyncio.to_thread(_exchange, port, raw) for raw, _, _ in _BAD)),
                                    60.0)
    finally:
      server.close()

  (answers, stats), *bad = asyncio.run(scenario())
  for image, answer in zip(images, answers):
    np.testing.assert_allclose(answer["outputs"][0],
                               image.reshape(-1).astype(np.float32) @ fakes.W,
                               rtol=1e-4, atol=1e-3)
    assert answer["source"] in serving.SOURCES
  for (raw, status, words), (got, answer) in zip(_BAD, bad):
    assert (got, words) == (status, words) and words in answer["error"], raw
  assert sum(stats[s] for s in serving.SOURCES) == len(images)


def test_json_batch_and_single_example_shapes():
  endpoint = serving.Endpoint(None, _SHAPE, np.uint8, dict, max_batch=4)
  single = endpoint.parse(json.dumps({"inputs": _IMAGE.tolist()}).encode(),
                          "application/json")
  batch = endpoint.parse(fakes.npy(np.stack([_IMAGE] * 3)), "application/x-npy")
  assert single.shape == (1,) + _SHAPE and single.dtype == np.uint8
  assert batch.shape == (3,) + _SHAPE


def _endpoint(service_s=1e-3, max_batch=8, endpoint_class=serving.Endpoint):
  frontend = serving.Frontend(
      serving.SharedQueuePool([fakes.Instance(service_s)] * 4), np.zeros(4))
  return endpoint_class(lambda x: frontend.predict(x.astype(np.float32)),
                        _SHAPE, np.uint8, lambda: dict(frontend.counts),
                        max_batch=max_batch)


async def _read_answer(reader):
  """`(status, JSON answer)` read from a raw connection; (None, None) at EOF."""
  line = await reader.readline()
  if not line:
    return None, None
  length = 0
  while (header := await reader.readline()) != b"\r\n":
    if header.lower().startswith(b"content-length:"):
      length = int(header.split(b":")[1])
  return int(line.split()[1]), json.loads(await reader.readexactly(length))


_GOOD = _post(fakes.npy(_IMAGE), "application/x-npy")


@pytest.mark.parametrize("partial", [
    b"POST /predict HTTP/1.1\r\n",  # The request line only.
    _GOOD[:_GOOD.index(b"\r\n\r\n")],  # Headers not ended.
    _GOOD[:-10],  # Part of the body.
], ids=["request line", "headers", "body"])
def test_a_request_must_arrive_within_one_deadline(partial):
  async def scenario():
    server = await serving.serve_http(_endpoint(), request_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    tic = time.perf_counter()
    for i in range(0, len(partial), 40):  # Trickled: the deadline is total.
      writer.write(partial[i:i + 40])
      await asyncio.sleep(0.02)
    answer = await asyncio.wait_for(_read_answer(reader), 5.0)
    elapsed = time.perf_counter() - tic
    closed = await reader.read() == b""
    stats = server.stats()
    writer.close()
    server.close()
    return answer, elapsed, closed, stats

  (status, answer), elapsed, closed, stats = asyncio.run(scenario())
  assert status == 408 and "within 0.3 s" in answer["error"]
  assert 0.3 <= elapsed < 1.5 and closed
  assert stats["timed_out_requests"] == 1


def test_connections_over_the_cap_get_503_and_others_are_served():
  async def scenario():
    server = await serving.serve_http(_endpoint(), max_connections=2)
    first = await asyncio.open_connection("127.0.0.1", server.port)
    second = await asyncio.open_connection("127.0.0.1", server.port)
    await asyncio.sleep(0.05)
    third = await asyncio.open_connection("127.0.0.1", server.port)
    refused = await asyncio.wait_for(_read_answer(third[0]), 5.0)
    first[1].write(_GOOD)
    served = await asyncio.wait_for(_read_answer(first[0]), 5.0)
    second[1].close()
    await asyncio.sleep(0.05)
    fourth = await asyncio.open_connection("127.0.0.1", server.port)
    fourth[1].write(b"GET /healthz HTTP/1.1\r\n\r\n")
    healthy = await asyncio.wait_for(_read_answer(fourth[0]), 5.0)
    stats = server.stats()
    for _, writer in (first, third, fourth):
      writer.close()
    server.close()
    return refused, served, healthy, stats

  refused, served, healthy, stats = asyncio.run(scenario())
  assert refused[0] == 503 and "busy" in refused[1]["error"]
  assert served[0] == 200 and healthy == (200, {"ok": True})
  assert stats["rejected_connections"] == 1 and stats["connections"] == 2


def test_shutdown_drains_queries_in_progress():
  async def scenario():
    server = await serving.serve_http(_endpoint(service_s=0.3))
    busy = [await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(4)]
    idle = await asyncio.open_connection("127.0.0.1", server.port)
    for _, writer in busy:
      writer.write(_GOOD)
    await asyncio.sleep(0.1)
    tic = time.perf_counter()
    shutdown = asyncio.create_task(server.shutdown(5.0))
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
      await asyncio.open_connection("127.0.0.1", server.port)
    idle_closed = await asyncio.wait_for(idle[0].read(), 1.0) == b""
    answers = [await asyncio.wait_for(_read_answer(r), 5.0) for r, _ in busy]
    await shutdown
    return answers, idle_closed, time.perf_counter() - tic

  answers, idle_closed, elapsed = asyncio.run(scenario())
  assert [status for status, _ in answers] == [200] * 4
  assert idle_closed and elapsed < 1.0


def test_large_bodies_are_parsed_off_the_event_loop():
  threads = []

  class Recording(serving.Endpoint):
    def parse(self, body, content_type):
      threads.append(threading.get_ident())
      return super().parse(body, content_type)

  endpoint = _endpoint(max_batch=4096, endpoint_class=Recording)
  small = json.dumps({"inputs": [_IMAGE.tolist()]}).encode()
  large = json.dumps({"inputs": [_IMAGE.tolist()] * 4096}).encode()
  assert len(small) < 65536 < len(large)

  async def scenario():
    return [await endpoint.handle("POST", "/predict", "application/json", b)
            for b in (small, large)]

  (small_status, _), (large_status, answer) = asyncio.run(scenario())
  assert small_status == large_status == 200 and len(answer["outputs"]) == 4096
  assert threads[0] == threading.get_ident() != threads[1]
