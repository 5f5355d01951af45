"""HTTP access to a frontend: request checks, a server and a small client.

Endpoints:

- `POST /predict`: one example shaped `input_shape` or a batch
  `(B, *input_shape)` with `1 <= B <= max_batch`, of dtype `input_dtype`,
  sent as a `.npy` file (`Content-Type: application/x-npy`, the binary
  endpoint) or as JSON `{"inputs": nested lists}` (`application/json`).
  Answer: `{"outputs": [[...] * B], "predictions": [argmax * B], "source":
  "original" | "reconstruction" | "default", "latency_ms": ...}`.
- `GET /stats`: the frontend's counts; `GET /healthz`: `{"ok": true}`.

Bad requests get a 4xx answer `{"error": "..."}` (400 bad body, shape or
dtype; 404; 405; 408 request not received by its deadline; 411 no length;
413 body too large; 415 content type) and never reach the frontend; a
connection over the server's cap gets 503. `Endpoint` holds the checks and
routing, shared by the standard-library server here and the Ray ingress.
Bodies over `_INLINE_PARSE_BYTES` are parsed in a thread, off the event loop.
"""

import asyncio
import http
import http.client
import io
import json
import logging
from typing import Callable, Optional
import urllib.parse

import numpy as np

from jaxcc.serving import _logs

NPY = "application/x-npy"
JSON = "application/json"
_MAX_HEADER_LINES = 64
_MAX_LINE_BYTES = 8192
_INLINE_PARSE_BYTES = 65536
_log = _logs.Limited(logging.getLogger(__name__))


class HttpError(Exception):
  """An HTTP error status with a message for the client."""

  def __init__(self, status: int, message: str):
    super().__init__(f"{status}: {message}")
    self.status = status
    self.message = message


class Endpoint:
  """Checks requests and answers them with a predict coroutine.

  Args:
    predict: `async (x_B) -> Prediction` on raw, checked inputs.
    input_shape: shape of one example.
    input_dtype: the only accepted dtype.
    stats: `() -> dict` for `GET /stats`.
    max_batch: most examples in one request.
    max_body_bytes: largest accepted body (default: room for a JSON batch
      of `max_batch` examples).
  """

  def __init__(self, predict: Callable, input_shape, input_dtype,
               stats: Callable[[], dict], *, max_batch: int = 64,
               max_body_bytes: Optional[int] = None):
    self._predict = predict
    self._shape = tuple(input_shape)
    self._dtype = np.dtype(input_dtype)
    self._stats = stats
    self._max_batch = max_batch
    self.max_body_bytes = max_body_bytes or (
        24 * max_batch * int(np.prod(self._shape)) + 4096)

  def check_length(self, method: str, content_length: Optional[str]) -> int:
    """The body length announced by a request; HttpError if unacceptable."""
    if content_length is None:
      if method == "POST":
        raise HttpError(411, "a POST needs a Content-Length header")
      return 0
    if not content_length.isdigit():
      raise HttpError(400, f"bad Content-Length {content_length!r}")
    if int(content_length) > self.max_body_bytes:
      raise HttpError(413, f"body of {content_length} bytes exceeds the "
                      f"limit of {self.max_body_bytes} bytes")
    return int(content_length)

  async def handle(self, method: str, path: str, content_type: str,
                   body: bytes) -> tuple:
    """`(status, JSON-able answer)` of one request."""
    try:
      return 200, await self._route(method, urllib.parse.urlsplit(path).path,
                                    content_type, body)
    except HttpError as e:
      return e.status, {"error": e.message}
    except Exception as e:  # pylint: disable=broad-except
      _log.error("internal", "%s %s failed: %r", method, path, e)
      return 500, {"error": f"internal error: {type(e).__name__}: {e}"}

  async def _route(self, method, path, content_type, body):
    routes = {"/predict": "POST", "/stats": "GET", "/healthz": "GET"}
    if path not in routes:
      raise HttpError(404, f"no endpoint {path}; try POST /predict")
    if method != routes[path]:
      raise HttpError(405, f"{path} takes {routes[path]}, not {method}")
    if path == "/healthz":
      return {"ok": True}
    if path == "/stats":
      return self._stats()
    if len(body) > self.max_body_bytes:
      raise HttpError(413, f"body exceeds {self.max_body_bytes} bytes")
    if len(body) > _INLINE_PARSE_BYTES:
      x_B = await asyncio.to_thread(self.parse, body, content_type)
    else:
      x_B = self.parse(body, content_type)
    prediction = await self._predict(x_B)
    return {"outputs": prediction.output.tolist(),
            "predictions": prediction.output.argmax(-1).tolist(),
            "source": prediction.source,
            "latency_ms": 1e3 * prediction.latency_s}

  def parse(self, body: bytes, content_type: str) -> np.ndarray:
    """The checked `(B, *input_shape)` batch in a request body."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == NPY:
      try:
        x = np.load(io.BytesIO(body), allow_pickle=False)
      except Exception as e:  # pylint: disable=broad-except
        raise HttpError(400, f"body is not a .npy array: {e}") from None
      if x.dtype != self._dtype:
        raise HttpError(400, f"expected dtype {self._dtype}, got {x.dtype}")
    elif kind == JSON:
      x = self._parse_json(body)
    else:
      raise HttpError(415, f"Content-Type must be {NPY} or {JSON}, got "
                      f"{content_type!r}")
    if x.shape == self._shape:
      x = x[None]
    if x.shape[1:] != self._shape or not 1 <= len(x) <= self._max_batch:
      raise HttpError(400, f"expected shape {self._shape} or (B, "
                      f"*{self._shape}) with 1 <= B <= {self._max_batch}, "
                      f"got {x.shape}")
    return x

  def _parse_json(self, body):
    try:
      inputs = json.loads(body)["inputs"]
      x = np.asarray(inputs)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
      raise HttpError(400, "body must be JSON {\"inputs\": nested lists of "
                      f"numbers}}: {e}") from None
    if x.dtype.kind not in "iuf":
      raise HttpError(400, "inputs must be a nested list of numbers with a "
                      "regular shape")
    if self._dtype.kind in "iu":
      info = np.iinfo(self._dtype)
      if x.dtype.kind not in "iu" or (x.size and (
          x.min() < info.min or x.max() > info.max)):
        raise HttpError(400, f"expected integers of dtype {self._dtype} "
                        f"({info.min}..{info.max})")
    return x.astype(self._dtype)


async def serve_http(endpoint: Endpoint, host: str = "127.0.0.1",
                     port: int = 0, *, request_timeout_s: float = 10.0,
                     idle_timeout_s: float = 60.0,
                     max_connections: int = 256) -> "HttpServer":
  """Starts an HTTP/1.1 server (keep-alive) for `endpoint`.

  Args:
    endpoint: checks and answers requests.
    host: the address to bind; the default takes local clients only.
    port: the port (0: any free one, see `HttpServer.port`).
    request_timeout_s: one deadline for a request's line, headers and body,
      counted from its first line (408 after it).
    idle_timeout_s: a kept-alive connection with no request for this long is
      closed.
    max_connections: connections beyond this many get 503 and are closed.
  """
  server = HttpServer(endpoint, request_timeout_s, idle_timeout_s,
                      max_connections)
  server.server = await asyncio.start_server(
      server._on_connection, host, port,  # pylint: disable=protected-access
      limit=_MAX_LINE_BYTES)
  server.port = server.sockets[0].getsockname()[1]
  return server


class HttpServer:
  """A running server of one endpoint; make one with `serve_http`."""

  def __init__(self, endpoint, request_timeout_s, idle_timeout_s,
               max_connections):
    self._endpoint = endpoint
    self._request_timeout_s = request_timeout_s
    self._idle_timeout_s = idle_timeout_s
    self._max_connections = max_connections
    self.server = None  # The asyncio.Server.
    self.port = None  # The bound port.
    self._busy = {}  # writer -> whether a request is in progress on it
    self._quiet = asyncio.Event()  # No request in progress.
    self._quiet.set()
    self._draining = False
    self.rejected = self.timed_out = 0

  @property
  def sockets(self):
    return self.server.sockets

  def stats(self) -> dict:
    """Open connections, requests in progress, and refused or late ones."""
    return {"connections": len(self._busy),
            "requests_in_progress": sum(self._busy.values()),
            "rejected_connections": self.rejected,
            "timed_out_requests": self.timed_out}

  def close(self) -> None:
    """Stops at once: no new connections, open ones closed."""
    self.server.close()
    for writer in list(self._busy):
      writer.close()

  async def shutdown(self, timeout_s: float = 30.0) -> None:
    """Drains: stops accepting and answers the requests in progress.

    Idle connections close at once; the others after their answer, or after
    `timeout_s` in any case.
    """
    self._draining = True
    self.server.close()
    for writer, busy in list(self._busy.items()):
      if not busy:  # Idle keep-alive connections end now.
        writer.close()
    try:
      await asyncio.wait_for(self._quiet.wait(), timeout_s)
    except asyncio.TimeoutError:
      _log.warning("drain", "%d requests still in progress after %.1f s; "
                   "closing their connections",
                   sum(self._busy.values()), timeout_s)
    self.close()

  async def _on_connection(self, reader, writer):
    """Serves one connection (asyncio's client_connected_cb)."""
    if self._draining or len(self._busy) >= self._max_connections:
      self.rejected += 1
      _log.warning("connection cap", "refused a connection: %d open (cap "
                   "%d)%s", len(self._busy), self._max_connections,
                   ", draining" if self._draining else "")
      try:
        await asyncio.wait_for(_respond(writer, 503, {
            "error": "server busy or shutting down; retry later"}, True),
                               self._request_timeout_s)
      except (ConnectionError, asyncio.TimeoutError):
        pass
      finally:
        writer.close()
      return
    self._busy[writer] = False
    try:
      await self._serve(reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError,
            asyncio.TimeoutError):
      pass
    except Exception as e:  # pylint: disable=broad-except
      _log.error("connection", "connection failed: %r", e)
    finally:
      del self._busy[writer]
      self._update_quiet()
      writer.close()

  def _set_busy(self, writer, busy):
    self._busy[writer] = busy
    self._update_quiet()

  def _update_quiet(self):
    if any(self._busy.values()):
      self._quiet.clear()
    else:
      self._quiet.set()

  async def _serve(self, reader, writer):
    while not self._draining:
      try:
        line = await asyncio.wait_for(reader.readline(), self._idle_timeout_s)
      except (asyncio.TimeoutError, ValueError):  # Idle, or line too long.
        return
      if not line:
        return
      self._set_busy(writer, True)
      try:
        method, path, headers, body = await asyncio.wait_for(
            self._read_request(line, reader), self._request_timeout_s)
      except HttpError as e:
        await self._respond(writer, e.status, {"error": e.message}, True)
        return
      except ValueError:  # A line over the reader's limit.
        await self._respond(writer, 400, {"error": "request head too long"},
                            True)
        return
      except asyncio.TimeoutError:
        self.timed_out += 1
        await self._respond(writer, 408, {
            "error": f"request not received within "
                     f"{self._request_timeout_s} s"}, True)
        return
      status, answer = await self._endpoint.handle(
          method, path, headers.get("content-type", ""), body)
      close = (headers.get("connection", "").lower() == "close"
               or self._draining)
      await self._respond(writer, status, answer, close)
      self._set_busy(writer, False)
      if close:
        return

  async def _read_request(self, line, reader):
    method, path, headers = await _read_head(line, reader)
    length = self._endpoint.check_length(method, headers.get("content-length"))
    return method, path, headers, await reader.readexactly(length)

  async def _respond(self, writer, status, answer, close):
    """Answers; a client that does not read its answer in time is dropped."""
    await asyncio.wait_for(_respond(writer, status, answer, close),
                           self._request_timeout_s)


async def _read_head(request_line, reader):
  """`(method, path, headers)` of a request whose first line was read."""
  parts = request_line.decode("latin-1").split()
  if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
    raise HttpError(400, "malformed request line")
  headers = {}
  for _ in range(_MAX_HEADER_LINES):
    line = (await reader.readline()).decode("latin-1").strip()
    if not line:
      return parts[0], parts[1], headers
    name, sep, value = line.partition(":")
    if not sep:
      raise HttpError(400, f"malformed header line {line[:80]!r}")
    headers[name.strip().lower()] = value.strip()
  raise HttpError(400, "too many header lines")


async def _respond(writer, status, answer, close):
  body = json.dumps(answer).encode()
  head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
          f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n"
          f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
  writer.write(head.encode() + body)
  await writer.drain()


class Client:
  """A small blocking client of a serving endpoint (local or Ray).

  Args:
    url: e.g. "http://127.0.0.1:8000".
    timeout_s: socket timeout of each request.
  """

  def __init__(self, url: str, timeout_s: float = 30.0):
    parts = urllib.parse.urlsplit(url)
    self._conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                            timeout=timeout_s)
    self._prefix = parts.path.rstrip("/")

  def predict(self, x, binary: bool = True) -> dict:
    """Predictions for one example or a batch (`.npy` body if binary)."""
    if binary:
      buffer = io.BytesIO()
      np.save(buffer, np.asarray(x), allow_pickle=False)
      return self.request("POST", "/predict", buffer.getvalue(), NPY)
    return self.request("POST", "/predict",
                        json.dumps({"inputs": np.asarray(x).tolist()}).encode(),
                        JSON)

  def stats(self) -> dict:
    return self.request("GET", "/stats")

  def request(self, method, path, body=None, content_type=JSON) -> dict:
    """One request; raises HttpError unless the status is 200."""
    headers = {"Content-Type": content_type} if body is not None else {}
    self._conn.request(method, self._prefix + path, body, headers)
    response = self._conn.getresponse()
    answer = json.loads(response.read() or b"{}")
    if response.status != 200:
      raise HttpError(response.status, answer.get("error", ""))
    return answer

  def close(self) -> None:
    self._conn.close()
