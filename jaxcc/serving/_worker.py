"""A model-instance worker process of the local backend.

The process runs `serve_fd(FD)`, FD being its end of a socket pair. Messages
are pickles, each framed by its length (`frame`). The first message is
`(model factories, example_B, batch sizes)` (see `jaxcc.serving.Served`):
the worker builds each model, compiles it for each batch size (inputs are
padded to power-of-two buckets, see `_batching`), says READY, then answers
`(request_id, x_B, delay_s)` with `(request_id, y_BC)` until the socket
closes. Such a request is for the first model; `(request_id, x_B, delay_s,
model)` names one by its index. It ignores SIGINT: a Ctrl-C to the server's
process group reaches the workers too, and the server, not the signal, ends
them (by closing the socket, or SIGKILL).
"""

import pickle
import signal
import socket
import struct
import time

from jaxcc.serving import _batching

READY = "ready"
HEADER = struct.Struct("!Q")  # The length of the pickle that follows.


def frame(message) -> bytes:
  """The bytes of one message on the wire."""
  payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
  return HEADER.pack(len(payload)) + payload


def main(sock: socket.socket) -> None:
  """Builds and warms the models from the first message, then answers."""
  factories, example_B, batch_sizes = _receive(sock)
  fns = [_batching.padded(factory()) for factory in factories]
  for fn in fns:
    for size in batch_sizes:
      fn(_batching.pad(example_B[:1], size))
  sock.sendall(frame(READY))
  while True:
    try:
      request_id, x_B, delay_s, *model = _receive(sock)
    except (EOFError, OSError):
      return
    if delay_s > 0:
      time.sleep(delay_s)  # Emulated background load.
    fn = fns[model[0] if model else 0]
    sock.sendall(frame((request_id, fn(x_B))))


def serve_fd(fd: int) -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  main(socket.socket(fileno=fd))


def _receive(sock):
  (length,) = HEADER.unpack(_exactly(sock, HEADER.size))
  return pickle.loads(_exactly(sock, length))


def _exactly(sock, n):
  buffer = bytearray(n)
  view, got = memoryview(buffer), 0
  while got < n:
    count = sock.recv_into(view[got:])
    if not count:
      raise EOFError("the frontend closed the connection")
    got += count
  return buffer
