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
dtype; 404; 405; 408 body too slow; 411 no length; 413 body too large; 415
content type) and never reach the frontend. `Endpoint` holds the checks and
routing, shared by the standard-library server here and the Ray ingress.
"""

import asyncio
import http
import http.client
import io
import json
from typing import Callable, Optional
import urllib.parse

import numpy as np

NPY = "application/x-npy"
JSON = "application/json"
_MAX_HEADER_LINES = 64
_MAX_LINE_BYTES = 8192


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
                     port: int = 0, *, body_timeout_s: float = 10.0,
                     idle_timeout_s: float = 60.0) -> asyncio.Server:
  """Starts an HTTP/1.1 server (keep-alive) for `endpoint`.

  The bound port is `server.sockets[0].getsockname()[1]`.
  """
  async def on_connection(reader, writer):
    try:
      await _serve_connection(endpoint, reader, writer, body_timeout_s,
                              idle_timeout_s)
    except (ConnectionError, asyncio.IncompleteReadError):
      pass
    finally:
      writer.close()

  return await asyncio.start_server(on_connection, host, port,
                                    limit=_MAX_LINE_BYTES)


async def _serve_connection(endpoint, reader, writer, body_timeout_s,
                            idle_timeout_s):
  while True:
    try:
      line = await asyncio.wait_for(reader.readline(), idle_timeout_s)
      if not line:
        return
      method, path, headers = await _read_head(line, reader)
    except (asyncio.TimeoutError, HttpError, ValueError) as e:
      if isinstance(e, HttpError):
        await _respond(writer, e.status, {"error": e.message}, close=True)
      elif isinstance(e, ValueError):  # A line over the reader's limit.
        await _respond(writer, 400, {"error": "request head too long"},
                       close=True)
      return
    try:
      length = endpoint.check_length(method, headers.get("content-length"))
      body = await asyncio.wait_for(reader.readexactly(length),
                                    body_timeout_s)
    except HttpError as e:
      await _respond(writer, e.status, {"error": e.message}, close=True)
      return
    except asyncio.TimeoutError:
      await _respond(writer, 408, {"error": "body not received in time"},
                     close=True)
      return
    status, answer = await endpoint.handle(
        method, path, headers.get("content-type", ""), body)
    close = headers.get("connection", "").lower() == "close"
    await _respond(writer, status, answer, close)
    if close:
      return


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
