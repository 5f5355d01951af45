"""A model-instance worker process of the local backend.

The process runs `serve_fd(FD)`, FD being its end of a socket pair. The
first message is a model factory (see `jaxcc.serving.Served`); the worker
builds the model, says "ready", then answers `(request_id, x_B, delay_s,
drop)` messages with `(request_id, y_BC)` until the socket closes.
"""

import time
from multiprocessing import connection

READY = "ready"


def main(conn) -> None:
  """Builds the model from the first message, then answers requests."""
  fn = conn.recv()()
  conn.send(READY)
  while True:
    try:
      request_id, x_B, delay_s, drop = conn.recv()
    except (EOFError, OSError):
      return
    if delay_s > 0:
      time.sleep(delay_s)  # Emulated background load.
    y_BC = fn(x_B)
    if not drop:
      conn.send((request_id, y_BC))


def serve_fd(fd: int) -> None:
  main(connection.Connection(fd))
