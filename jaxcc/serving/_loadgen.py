"""Open-loop HTTP load: Poisson arrivals over many keep-alive connections.

`run` sends request i at the i-th Poisson arrival time of `rate` whatever
the server does (open loop: a slow server does not slow the arrivals, so its
queueing shows in the latencies rather than hiding in a lower offered rate).
A request takes an idle connection, or opens one while fewer than
`connections` are open; beyond that it waits, and its latency, counted from
its scheduled arrival to the end of its answer, includes the wait. Works
against any deployment of the endpoint (`serve.py`, Ray Serve).
"""

import asyncio
import collections
import json
from typing import NamedTuple, Sequence
import urllib.parse

import numpy as np

from jaxcc.serving import _http

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Result(NamedTuple):
  """What one run of `run` saw.

  Attributes:
    latencies_s: `(N,)` arrival-to-answer time of every request (NaN when it
      got no HTTP answer).
    outcomes: per request, the HTTP status as a string ("200", "503") or
      the error that ended it ("timeout", "ConnectionResetError", ...).
    answers: per request, the decoded JSON answer (None without one).
    duration_s: first arrival to last answer.
  """
  latencies_s: np.ndarray
  outcomes: list
  answers: list
  duration_s: float


async def run(url: str, bodies: Sequence[bytes], *, rate: float,
              num_requests: int, connections: int = 64,
              timeout_s: float = 10.0, seed: int = 0,
              content_type: str = _http.NPY,
              path: str = "/predict") -> Result:
  """POSTs `num_requests` bodies (cycling through `bodies`) at Poisson times.

  Args:
    url: the server, e.g. "http://127.0.0.1:8000".
    bodies: request bodies, sent in turn.
    rate: mean arrivals per second.
    num_requests: requests to send.
    connections: most connections open at once.
    timeout_s: a request without an answer by then (counted from when it
      gets a connection) is abandoned as "timeout" and its connection
      closed.
    seed: seed of the arrival times.
    content_type: of every body.
    path: the endpoint, after the URL's own path.
  """
  if rate <= 0 or num_requests < 1 or connections < 1 or not bodies:
    raise ValueError(f"need rate > 0, num_requests >= 1, connections >= 1 "
                     f"and some bodies; got rate={rate}, num_requests="
                     f"{num_requests}, connections={connections}, "
                     f"{len(bodies)} bodies")
  parts = urllib.parse.urlsplit(url)
  if parts.scheme != "http" or not parts.hostname:
    raise ValueError(f"expected a URL like http://host:port, got {url!r}")
  target = (parts.hostname, parts.port or 80,
            parts.path.rstrip("/") + path)
  loop = asyncio.get_running_loop()
  arrivals = np.cumsum(np.random.default_rng(seed).exponential(
      1.0 / rate, num_requests))
  latencies_s = np.full(num_requests, np.nan)
  outcomes, answers = [None] * num_requests, [None] * num_requests
  idle, slots = [], asyncio.Semaphore(connections)

  async def send(i, due):
    async with slots:
      connection = idle.pop() if idle else None
      try:
        if connection is None:
          connection = await asyncio.wait_for(
              _Connection.open(*target[:2]), timeout_s)
        status, answer, keep = await asyncio.wait_for(
            connection.post(target[2], bodies[i % len(bodies)],
                            content_type), timeout_s)
      except asyncio.TimeoutError:
        outcomes[i] = "timeout"
      except (OSError, ValueError, asyncio.IncompleteReadError) as e:
        outcomes[i] = type(e).__name__
      else:
        outcomes[i], answers[i] = str(status), answer
        latencies_s[i] = loop.time() - due
        if keep:
          idle.append(connection)
          return
      if connection is not None:
        connection.close()

  start, tasks = loop.time(), []
  for i, arrival in enumerate(arrivals):
    await asyncio.sleep(max(0.0, start + arrival - loop.time()))
    tasks.append(asyncio.create_task(send(i, start + arrival)))
  await asyncio.gather(*tasks)
  for connection in idle:
    connection.close()
  return Result(latencies_s, outcomes, answers,
                loop.time() - start - arrivals[0])


def summary(result: Result) -> dict:
  """Counts, achieved rate and latency percentiles (ms) of 200 answers."""
  ok = np.array([o == "200" for o in result.outcomes])
  ms = 1e3 * result.latencies_s[ok]
  sources = collections.Counter(
      a.get("source") for a, good in zip(result.answers, ok) if good)
  out = {"requests": len(ok), "ok": int(ok.sum()),
         "errors": int((~ok).sum()),
         "outcomes": dict(collections.Counter(result.outcomes)),
         "sources": dict(sources),
         "answered_per_s": float(ok.sum() / max(result.duration_s, 1e-9))}
  if ms.size:
    out.update({f"p{q:g}_ms": float(np.percentile(ms, q))
                for q in PERCENTILES})
    out["max_ms"] = float(ms.max())
  return out


def histogram(latencies_s) -> list:
  """`(upper bound ms, count)` of answered requests in power-of-two bins."""
  ms = 1e3 * np.asarray(latencies_s, float)
  ms = ms[np.isfinite(ms)]
  if not ms.size:
    return []
  top = int(np.ceil(np.log2(max(ms.max(), 1e-3))))
  edges = 2.0 ** np.arange(min(top, -2), top + 1)
  counts = np.histogram(ms, np.concatenate([[0.0], edges]))[0]
  return [(float(e), int(c)) for e, c in zip(edges, counts)]


class _Connection:
  """One keep-alive HTTP/1.1 client connection."""

  def __init__(self, reader, writer, host):
    self._reader, self._writer, self._host = reader, writer, host

  @classmethod
  async def open(cls, host, port):
    reader, writer = await asyncio.open_connection(host, port)
    return cls(reader, writer, host)

  async def post(self, path, body, content_type) -> tuple:
    """`(status, JSON answer, whether the connection stays open)`."""
    self._writer.write(
        (f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: "
         f"{content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        + body)
    await self._writer.drain()
    status_line = await self._reader.readline()
    if not status_line:
      raise ConnectionResetError("the server closed the connection")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
      raise ValueError(f"bad status line {status_line[:80]!r}")
    headers = {}
    while line := (await self._reader.readline()).strip():
      name, _, value = line.decode("latin-1").partition(":")
      headers[name.strip().lower()] = value.strip()
    payload = await self._reader.readexactly(
        int(headers.get("content-length", 0)))
    try:
      answer = json.loads(payload) if payload else None
    except ValueError:
      answer = None
    keep = headers.get("connection", "").lower() != "close"
    return int(parts[1]), answer, keep

  def close(self):
    self._writer.close()
