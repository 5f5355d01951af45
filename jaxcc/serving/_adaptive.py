"""An adaptive policy: hedge, code, or both, from what the frontend observes.

Both kinds of redundancy load the instances. Coding sends r parity queries
per k queries whatever happens: a fixed r/k more work. A hedged copy is sent
only for a query still unanswered after the hedge delay, and the shared
queue withdraws a copy that has not started when the first answer comes, so
its extra work is small until the pool is so busy that queries wait longer
than the delay. Either one hurts once the work it adds pushes the pool into
queueing. The policy estimates the pool's utilisation from the offered load,

  rho = arrival rate * mean service time / live instances,

(the last `window` arrivals and the last `window` service times the pool
measured, dispatch to reply, slowdowns included), every `every` arrivals,
and then decides for the queries that follow:

- coding stops when the load with parities, `rho * (1 + r/k)`, rises above
  `code_below`, and resumes when it falls below `code_below - hysteresis`
  (the band keeps a noisy estimate near the threshold from flipping the
  decision, and a coded group from waiting for its timeout at each flip);
- a query is hedged iff `rho * (1 + r/k if coding else 1) < hedge_below`,
  after the `hedge_quantile` of the recent service times.

It is meant for a pool whose instances serve both F and the parity model
(`_bench`'s "adaptive" mode), so that redundancy not spent on parities
serves queries. Until the first estimate every query is coded and hedged,
after the initial `hedge_after_s`, and the delay stays there until `window`
service times have been seen. The defaults were chosen on the utilisation
sweep's tuning seeds (docs/SERVING.md: k = 2, seeds 100-102, code_below 0.85
against 0.75) and evaluated on other seeds.
"""

import collections
from typing import Optional

import numpy as np


class Adaptive:
  """Chooses per query whether to code it and whether to hedge it.

  Args:
    pool: the pool the queries go to (`service_s`, `stats()["live"]`).
    hedge_after_s: hedge delay before enough service times are observed.
    redundancy: r/k, the extra work of coding per query.
    code_below: stop coding when `rho * (1 + r/k)` rises above this.
    hysteresis: resume coding below `code_below - hysteresis`.
    hedge_below: hedge while the load, parities included, is below this.
    hedge_quantile: hedge after this quantile of recent service times.
    window: arrivals and service times the estimates use.
    every: arrivals between two refreshes of the estimates.
  """

  def __init__(self, pool, *, hedge_after_s: float, redundancy: float,
               code_below: float = 0.85, hysteresis: float = 0.05,
               hedge_below: float = 1.0, hedge_quantile: float = 0.95,
               window: int = 5000, every: int = 100):
    if not 0 < hedge_quantile < 1 or window < 2 or every < 1:
      raise ValueError(f"need 0 < hedge_quantile < 1, window >= 2, every >= "
                       f"1; got {hedge_quantile}, {window}, {every}")
    self._pool = pool
    self._redundancy = redundancy
    self._code_below = code_below
    self._hysteresis = hysteresis
    self._hedge_below = hedge_below
    self._quantile = hedge_quantile
    self._window = window
    self._every = every
    self._arrivals = collections.deque(maxlen=window)
    self._count = 0
    self.hedge_after_s = hedge_after_s
    self.utilisation: Optional[float] = None  # rho, without redundancy
    self.coding = True
    self.decisions = collections.Counter()  # "code+hedge", "code", ...

  def arrived(self, now: float) -> None:
    """Records an arrival; refreshes the estimates every `every` of them."""
    self._arrivals.append(now)
    self._count += 1
    if self._count % self._every == 0:
      self._refresh()

  def choose(self, now: float) -> tuple:
    """`(coded, hedge_after_s or None)` for a query arriving now."""
    del now  # The estimates are refreshed on arrival.
    rho = 0.0 if self.utilisation is None else self.utilisation
    hedged = rho * (1 + self._redundancy * self.coding) < self._hedge_below
    self.decisions[("code" if self.coding else "plain")
                   + ("+hedge" if hedged else "")] += 1
    return self.coding, self.hedge_after_s if hedged else None

  def _refresh(self):
    span = self._arrivals[-1] - self._arrivals[0]
    service_s = self._pool.service_s[-self._window:]
    live = self._pool.stats()["live"]
    if span <= 0 or not service_s or not live:
      return
    rate = (len(self._arrivals) - 1) / span
    self.utilisation = rate * float(np.mean(service_s)) / live
    coded_load = self.utilisation * (1 + self._redundancy)
    if coded_load > self._code_below:
      self.coding = False
    elif coded_load < self._code_below - self._hysteresis:
      self.coding = True
    if len(service_s) == self._window:
      self.hedge_after_s = float(np.quantile(service_s, self._quantile))
