"""Injected faults: instance slowdowns, crashes and dropped responses.

A slowdown process decides *when* each instance is slow, as per-instance
`(M, 2)` arrays of `[start, end)` intervals in seconds from the start of a
run. A request that starts service on a slow instance is delayed by a
heavy-tailed (Pareto) extra time. Two processes:

- "episodes": each instance independently turns slow at Poisson times
  (`rate` per second) for exponentially distributed periods
  (`duration_s` on average): generic background load.
- "transfers": the paper's background network traffic (§V-F): `pairs`
  transfers run at all times, each between two instances drawn at random and
  moving between `transfer_mb_min` and `transfer_mb_max` MB (uniformly) at
  `bandwidth_mb_s`; both instances are slow while it lasts, and a finished
  transfer is replaced at once by a new one.

The same schedules drive the real local backend and the simulator.
"""

import bisect
import dataclasses

import numpy as np

PROCESSES = ("none", "episodes", "transfers")


@dataclasses.dataclass(frozen=True)
class Faults:
  """What goes wrong, and how often.

  Attributes:
    process: the slowdown process, one of `PROCESSES`.
    rate: "episodes": slow episodes per second per instance.
    duration_s: "episodes": mean length of an episode.
    pairs: "transfers": concurrent background transfers.
    transfer_mb_min: "transfers": smallest transfer in MB.
    transfer_mb_max: "transfers": largest transfer in MB.
    bandwidth_mb_s: "transfers": throughput of one transfer in MB/s.
    delay_s: scale (smallest value) of the Pareto extra delay of a request
      served while its instance is slow.
    alpha: Pareto shape; smaller is heavier-tailed (infinite variance < 2).
    max_delay_s: cap on one extra delay, so every request ends.
    crash_rate: instance crashes per second per instance (local backend).
    restart_s: time from a crash to the restart of the instance's process.
    drop_prob: probability that an instance's response is lost.
  """
  process: str = "none"
  rate: float = 0.1
  duration_s: float = 1.0
  pairs: int = 4
  transfer_mb_min: float = 128.0
  transfer_mb_max: float = 256.0
  bandwidth_mb_s: float = 160.0
  delay_s: float = 0.02
  alpha: float = 1.5
  max_delay_s: float = 0.5
  crash_rate: float = 0.0
  restart_s: float = 1.0
  drop_prob: float = 0.0

  def __post_init__(self):
    if self.process not in PROCESSES:
      raise ValueError(f"unknown slowdown process {self.process!r}; "
                       f"expected one of {PROCESSES}")
    if min(self.rate, self.duration_s, self.delay_s, self.alpha,
           self.max_delay_s, self.bandwidth_mb_s, self.crash_rate,
           self.restart_s) < 0 or not 0 <= self.drop_prob <= 1:
      raise ValueError(f"fault parameters must be non-negative and drop_prob "
                       f"a probability; got {self}")


def schedule(faults: Faults, num_instances: int, horizon_s: float,
             seed: int) -> list:
  """Slow intervals of every instance: a list of `(M_i, 2)` arrays."""
  rng = np.random.default_rng(seed)
  if faults.process == "episodes":
    return [_episodes(faults, horizon_s, rng) for _ in range(num_instances)]
  if faults.process == "transfers":
    return _transfers(faults, num_instances, horizon_s, rng)
  return [np.zeros((0, 2)) for _ in range(num_instances)]


def crash_times(faults: Faults, num_instances: int, horizon_s: float,
                seed: int) -> list:
  """Poisson crash times of every instance: a list of sorted arrays."""
  rng = np.random.default_rng([seed, 1])
  return [_poisson_times(faults.crash_rate, horizon_s, rng)
          for _ in range(num_instances)]


def is_slow(intervals_M2, t: float) -> bool:
  """Whether time `t` falls in one of the sorted `[start, end)` intervals."""
  i = bisect.bisect_right(intervals_M2[:, 0], t) - 1
  return i >= 0 and t < intervals_M2[i, 1]


def extra_delay(faults: Faults, intervals_M2, t: float, rng) -> float:
  """The slowdown added to a request that starts service at time `t`."""
  if not is_slow(intervals_M2, t):
    return 0.0
  pareto = faults.delay_s * (1.0 - rng.random()) ** (-1.0 / faults.alpha)
  return float(min(pareto, faults.max_delay_s))


def _poisson_times(rate, horizon_s, rng):
  if rate <= 0:
    return np.zeros(0)
  n = rng.poisson(rate * horizon_s)
  return np.sort(rng.uniform(0.0, horizon_s, n))


def _episodes(faults, horizon_s, rng):
  starts = _poisson_times(faults.rate, horizon_s, rng)
  ends = starts + rng.exponential(faults.duration_s, len(starts))
  return _merge(starts, ends)


def _transfers(faults, num_instances, horizon_s, rng):
  if num_instances < 2:
    raise ValueError("the transfers process needs at least 2 instances")
  lo, hi = faults.transfer_mb_min, faults.transfer_mb_max
  spans = [[] for _ in range(num_instances)]
  for _ in range(faults.pairs):
    t = 0.0
    while t < horizon_s:
      end = t + rng.uniform(lo, hi) / faults.bandwidth_mb_s
      for i in rng.choice(num_instances, size=2, replace=False):
        spans[i].append((t, end))
      t = end
  return [_merge(*np.array(s, dtype=float).reshape(-1, 2).T) for s in spans]


def _merge(starts, ends):
  """Sorted, non-overlapping `(M, 2)` union of the intervals."""
  merged = []
  for start, end in sorted(zip(starts, ends)):
    if merged and start <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], end)
    else:
      merged.append([start, end])
  return np.array(merged, dtype=float).reshape(-1, 2)


class Injector:
  """Draws the slowdown and the drop of each request a pool dispatches.

  Times are seconds since `start(t0)`; before it (warm-up) nothing is
  injected. Deterministic for a given seed and order of requests.

  Args:
    faults: what to inject.
    intervals: the pool's slow intervals, one `(M, 2)` array per slot.
    seed: seed of the delay and drop draws.
  """

  def __init__(self, faults: Faults, intervals, seed: int):
    self.faults = faults
    self.intervals = intervals
    self.t0 = None
    self._rng = np.random.default_rng([seed, 2])

  def start(self, t0: float) -> None:
    self.t0 = t0

  def draw(self, slot: int, now: float) -> tuple:
    """`(delay_s, drop)` of a request that slot `slot` starts at `now`."""
    if self.t0 is None:
      return 0.0, False
    delay = extra_delay(self.faults, self.intervals[slot], now - self.t0,
                        self._rng)
    return delay, bool(self._rng.random() < self.faults.drop_prob)
