"""Rate-limited logging, so that a fault repeating fast cannot flood a log."""

import logging
import time
from typing import Callable


class Limited:
  """Writes at most `burst` records per `period_s` for each key.

  The first record after a quiet spell says how many were suppressed.

  Args:
    logger: a `logging.Logger`.
    burst: records per key and period.
    period_s: length of a period.
    clock: time source (seconds).
  """

  def __init__(self, logger: logging.Logger, burst: int = 5,
               period_s: float = 10.0,
               clock: Callable[[], float] = time.monotonic):
    self.logger = logger
    self._burst, self._period_s, self._clock = burst, period_s, clock
    self._windows = {}  # key -> [period start, records, suppressed]

  def log(self, level: int, key: str, message: str, *args) -> None:
    now = self._clock()
    window = self._windows.get(key)
    if window is None or now - window[0] >= self._period_s:
      suppressed = window[2] if window else 0
      window = self._windows[key] = [now, 0, 0]
      if suppressed:
        message += f" ({suppressed} similar messages suppressed)"
    if window[1] >= self._burst:
      window[2] += 1
      return
    window[1] += 1
    self.logger.log(level, message, *args)

  def info(self, key: str, message: str, *args) -> None:
    self.log(logging.INFO, key, message, *args)

  def warning(self, key: str, message: str, *args) -> None:
    self.log(logging.WARNING, key, message, *args)

  def error(self, key: str, message: str, *args) -> None:
    self.log(logging.ERROR, key, message, *args)
