"""Progress messages and per-epoch metrics, written by process 0 only.

Messages go through absl logging (INFO); `Progress` logs steps, examples/s
and time left inside long epochs. Metrics go to `metrics.jsonl` in the
workdir, one JSON record a line, and (with the `tensorboard` package, extra
`[scripts]`) to TensorBoard event files in `<workdir>/tensorboard/<stage>`:
every numeric field of an epoch record as the scalar `<stage>/<field>` at
step = epoch (`tensorboard --logdir <workdir>`). Without `tensorboard`, one
info line says so and metrics.jsonl alone is written. A stage that resumes
from epoch e first drops the records of its epochs after e, which the
interrupted run may have written before its last checkpoint, so
metrics.jsonl holds each epoch once. Event files cannot be rewritten: the
resumed run marks the restart (a `SessionLog.START` event at step e + 1), on
which TensorBoard's `EventAccumulator` drops the stage's points after e; a
reader that ignores the marker shows those epochs twice, the re-run points
equal except for the timings (a resumed run trains as an uninterrupted one).

The scripts call `setup_scripts(verbose)`: jaxcc's messages at INFO, other
libraries' (orbax, jax) only from WARNING on unless verbose; and
`clear_errors(verbose)`: an error that jaxcc raises on purpose (a
`ValueError` or `FloatingPointError`) ends the script with one line on
stderr, its traceback only when verbose.
"""

import contextlib
import json
import logging as std_logging
import os
import socket
import sys
import time
from typing import Optional

from absl import logging
import jax

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Seconds between two progress lines inside an epoch (`Progress`).
PROGRESS_SECS = 10.0


def info(message: str) -> None:
  """Logs `message` on process 0."""
  if jax.process_index() == 0:
    logging.info("%s", message)


def warning(message: str) -> None:
  """Logs `message` as a warning on process 0."""
  if jax.process_index() == 0:
    logging.warning("%s", message)


class Progress:
  """`progress(steps done)`: logs an epoch's steps, examples/s and time left,
  at most every `every_secs` (default `PROGRESS_SECS`; so only epochs longer
  than that show it). `start`: the steps done before (a resumed epoch)."""

  def __init__(self, steps: int, examples_per_step: int, start: int = 0,
               every_secs: Optional[float] = None):
    self.steps, self.examples_per_step = steps, examples_per_step
    self.start = start
    self.every_secs = PROGRESS_SECS if every_secs is None else every_secs
    self.began = self.last = time.monotonic()

  def __call__(self, done: int) -> None:
    now = time.monotonic()
    if (now - self.last < self.every_secs or not self.start < done <
        self.steps):
      return
    self.last = now
    per_sec = (done - self.start) / max(now - self.began, 1e-9)
    info(f"  step {done:,}/{self.steps:,}: "
         f"{per_sec * self.examples_per_step:,.0f} examples/s, "
         f"{(self.steps - done) / per_sec:,.0f} s left")


class MetricWriter:
  """Appends records to `<workdir>/metrics.jsonl` and TensorBoard (see the
  module docstring); process 0 only. `close()` when done."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILE)
    self._events_dir = os.path.join(workdir, TENSORBOARD_DIR)
    self._active = jax.process_index() == 0
    self._events = {}  # stage -> _EventFile
    self._protos = None  # tensorboard's (event_pb2, summary_pb2), or False

  def write(self, record: dict) -> None:
    if not self._active:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if record.get("epoch") is not None and not record.get("summary"):
      scalars = {name: float(value) for name, value in record.items()
                 if name not in ("stage", "epoch") and
                 isinstance(value, (int, float)) and
                 not isinstance(value, bool)}
      self._event(record["stage"], record["epoch"], scalars=scalars)

  def resume(self, stage: str, epoch: int) -> None:
    """Drops `stage`'s epoch records after `epoch`."""
    if not self._active:
      return
    if os.path.isdir(os.path.join(self._events_dir, stage)):
      self._event(stage, epoch + 1, restart=True)
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in records if r.get("stage") != stage or
            r.get("summary") or r["epoch"] <= epoch]
    if len(kept) != len(records):
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
      os.replace(self.path + ".tmp", self.path)

  def close(self) -> None:
    for events in self._events.values():
      events.close()
    self._events = {}

  def _event(self, stage, step, *, scalars=None, restart=False):
    """Writes scalars (or a restart marker) to `stage`'s event file."""
    if self._protos is None:
      self._protos = _tensorboard_protos()
      if not self._protos:
        info("TensorBoard: the tensorboard package is not installed, so "
             f"metrics go to {METRICS_FILE} only (pip install "
             "'jaxcc[scripts]')")
    if not self._protos:
      return
    event_pb2, summary_pb2 = self._protos
    if stage not in self._events:
      self._events[stage] = _EventFile(
          os.path.join(self._events_dir, stage), event_pb2)
    event = event_pb2.Event(wall_time=time.time(), step=step)
    if restart:
      event.session_log.status = event_pb2.SessionLog.START
    else:
      event.summary.CopyFrom(summary_pb2.Summary(value=[
          summary_pb2.Summary.Value(tag=f"{stage}/{name}", simple_value=value)
          for name, value in scalars.items()]))
    self._events[stage].write(event)


def _tensorboard_protos():
  """tensorboard's `(event_pb2, summary_pb2)`, or False when not installed."""
  try:
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto import summary_pb2
  except ImportError:
    return False
  return event_pb2, summary_pb2


class _EventFile:
  """One TensorBoard event file, written with tensorboard's `RecordWriter`
  (its `EventFileWriter` would import TensorFlow when installed) and flushed
  after every event."""

  def __init__(self, directory, event_pb2):
    # pylint: disable-next=g-import-not-at-top
    from tensorboard.summary.writer import record_writer
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, (
        f"events.out.tfevents.{int(time.time()):010d}."
        f"{socket.gethostname()}.{os.getpid()}.{time.time_ns()}"))
    self._file = open(self.path, "wb")
    self._records = record_writer.RecordWriter(self._file)
    self.write(event_pb2.Event(wall_time=time.time(),
                               file_version="brain.Event:2"))

  def write(self, event) -> None:
    self._records.write(event.SerializeToString())
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def setup_scripts(verbose: bool) -> None:
  """Logging for the command-line scripts (see the module docstring)."""
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler()
  handler.setFormatter(_PlainInfo(handler.formatter))
  if not verbose:
    handler.addFilter(lambda record: record.levelno >= std_logging.WARNING or
                      _own(record))


def _own(record: std_logging.LogRecord) -> bool:
  return record.pathname.startswith(_PACKAGE_DIR)


class _PlainInfo(std_logging.Formatter):
  """jaxcc's INFO messages as they are; anything else in absl's format."""

  def __init__(self, fallback):
    super().__init__()
    self._fallback = fallback

  def format(self, record):
    if record.levelno == std_logging.INFO and _own(record):
      return record.getMessage()
    return self._fallback.format(record)


@contextlib.contextmanager
def clear_errors(verbose: bool):
  """Turns jaxcc's deliberate errors into one line on stderr and exit 1."""
  try:
    yield
  except (ValueError, FloatingPointError) as e:
    if verbose:
      raise
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(f"error: {first_line or type(e).__name__} (rerun with --verbose "
          "for the traceback)", file=sys.stderr)
    sys.exit(1)
