"""Progress messages and per-epoch metrics, written by process 0 only.

Messages go through absl logging (INFO); metrics go to `metrics.jsonl` in the
workdir, one JSON record a line. A stage that resumes from epoch e first drops
the records of its epochs after e, which the interrupted run may have written
before its last checkpoint, so the file holds each epoch once.

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
import sys

from absl import logging
import jax

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

METRICS_FILE = "metrics.jsonl"


def info(message: str) -> None:
  """Logs `message` on process 0."""
  if jax.process_index() == 0:
    logging.info("%s", message)


def warning(message: str) -> None:
  """Logs `message` as a warning on process 0."""
  if jax.process_index() == 0:
    logging.warning("%s", message)


class MetricWriter:
  """Appends records to `<workdir>/metrics.jsonl` (process 0 only)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILE)
    self._active = jax.process_index() == 0

  def write(self, record: dict) -> None:
    if self._active:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")

  def resume(self, stage: str, epoch: int) -> None:
    """Drops `stage`'s epoch records after `epoch`."""
    if not (self._active and os.path.exists(self.path)):
      return
    with open(self.path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in records if r.get("stage") != stage or
            r.get("summary") or r["epoch"] <= epoch]
    if len(kept) != len(records):
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
      os.replace(self.path + ".tmp", self.path)


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
