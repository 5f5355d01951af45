"""The coding frontend of a prediction-serving system (paper §V-F).

Backend-agnostic and asyncio-based. A *pool* is anything with
`submit(x_B...) -> asyncio.Future` that resolves to the outputs `y_BC` of one
model instance (or raises when the instance failed); cancelling a future that
has not started service withdraws the request. A query is a batch `x_B...` of
B examples.

With a code, every k consecutive queries of the same shape form a coding
group: each goes to the base-model pool as soon as it arrives, and once the
group is full the frontend encodes it and sends the r parity queries to the
parity-model pools. As soon as k of a group's k+r outputs are back while a
data output is missing, it decodes and answers with the reconstruction; the
first of {original, reconstruction} wins and the loser is withdrawn or
ignored. Beyond the paper:

- `group_timeout_s`: a partial group is sealed after this long, padded with
  zero queries whose output F(0) is known, so queries in a quiet period are
  protected without waiting for k arrivals;
- `deadline_s`: a query not answered by then gets the default prediction, as
  does a query whose own request failed when its group cannot be decoded;
- counts of originals, reconstructions, defaults and failed requests, and the
  encode and decode time of every group.

Without a code the frontend sends each query to the base pool (no redundancy
or Equal-Resources, depending on the pool's size). With `hedge_after_s`, coded
or not, it also sends a second copy of a query still unanswered after that
delay to the base pool: the first of {original, copy, reconstruction} wins.
With a `policy` (`jaxcc.serving.Adaptive`) it asks, for every query, whether
to code it and whether (and when) to hedge it.

`sent` counts the requests the frontend submitted ("base", "hedge",
"parity"), the extra load each policy puts on the instances.
"""

import asyncio
import collections
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from jaxcc import codes
from jaxcc.serving import _batching

SOURCES = ("original", "reconstruction", "default")


class Prediction(NamedTuple):
  """What the frontend returns for one query."""
  output: np.ndarray  # (B, C)
  source: str  # one of SOURCES
  latency_s: float


class _Query:
  """A query in flight: its input, answer and outstanding requests."""

  def __init__(self, x_B, answer):
    self.x_B = x_B
    self.answer = answer  # future of (output, source)
    self.requests = []
    self.on_output = None  # callback(query, request) of its base requests


class _Group:
  """A coding group: up to k queries, then r parities once sealed."""

  def __init__(self, k, r):
    self.queries = []
    self.outputs = [None] * (k + r)
    self.failed = [False] * (k + r)
    self.parity_requests = []
    self.sealed = False
    self.timer = None


class Frontend:
  """Answers queries from model-instance pools, coded or not.

  Args:
    base_pool: the pool of base-model (F) instances.
    default_output: the `(C,)` default prediction.
    code: a `jaxcc.codes.Code` with parameters `code_params`; None serves
      without coding.
    parity_pools: with a code, one pool per parity (r pools).
    code_params: the code's parameters (`{}` for linear codes).
    group_timeout_s: seal a partial coding group after this long (None:
      wait for k queries, as the paper's system does).
    deadline_s: answer with the default prediction after this long (None:
      no deadline).
    hedge_after_s: resend a query unanswered after this long to the base
      pool (None: no hedging).
    policy: chooses per query whether to code and hedge it
      (`choose(now) -> (coded, hedge_after_s)`, `arrived(now)`); None: code
      every query when there is a code, hedge after `hedge_after_s`.
    clock: the time source of latencies in seconds (None: the event loop's
      clock, which is virtual in simulations).
  """

  def __init__(self, base_pool, default_output, *,
               code: Optional[codes.Code] = None, parity_pools: Sequence = (),
               code_params=None, group_timeout_s: Optional[float] = None,
               deadline_s: Optional[float] = None,
               hedge_after_s: Optional[float] = None, policy=None,
               clock: Optional[Callable[[], float]] = None):
    if code is not None and len(parity_pools) != code.r:
      raise ValueError(f"a code with r={code.r} needs {code.r} parity pools, "
                       f"got {len(parity_pools)}")
    if hedge_after_s is not None and hedge_after_s < 0:
      raise ValueError(f"hedge_after_s must be >= 0, got {hedge_after_s}")
    self._base = base_pool
    self._parities = tuple(parity_pools)
    self._code = code
    self._code_params = {} if code_params is None else code_params
    self._default = np.asarray(default_output, np.float32)
    self._group_timeout_s = group_timeout_s
    self._deadline_s = deadline_s
    self._hedge_after_s = hedge_after_s
    self.policy = policy
    self._clock = clock
    self._open = {}  # query shape -> the group being filled
    self._pad_y = None
    self.counts = collections.Counter({s: 0 for s in SOURCES + ("failure",)})
    self.sent = collections.Counter({s: 0 for s in ("base", "hedge",
                                                    "parity")})
    self.encode_us, self.decode_us = [], []
    if code is not None:  # Over rows padded to power-of-two buckets.
      encode, decode = jax.jit(code.encode), jax.jit(code.decode)
      self._encode = _batching.padded(
          lambda x_BK: encode(self._code_params, x_BK))
      self._decode = _batching.padded(
          lambda y_BN, available_N: decode(self._code_params, y_BN,
                                           available_N))

  async def start(self, input_shape, max_batch: int = 1) -> None:
    """Learns F(0) for padding; compiles the encoder and decoder.

    They are compiled for every batch-size bucket up to `max_batch`
    (`_batching`) before any query arrives, so no query waits for a
    compilation (nor does the event loop, later).

    Args:
      input_shape: the shape of one example (no batch axis).
      max_batch: the largest query batch.
    """
    if self._code is None:
      return
    k, n = self._code.k, self._code.k + self._code.r
    pad_BS = np.zeros((1,) + tuple(input_shape), np.float32)
    self._pad_y = np.asarray(await self._base.submit(pad_BS))[0]
    for size in _batching.buckets(max_batch):
      self._encode(np.zeros((size, k) + pad_BS.shape[1:], np.float32))
      self._decode(np.zeros((size, n) + self._pad_y.shape, np.float32),
                   np.arange(n) != 0)

  async def predict(self, x_B) -> Prediction:
    """Answers one query `x_B...` (a batch of B examples)."""
    if self._code is not None and self._pad_y is None:
      raise RuntimeError("await frontend.start(input_shape) before predict")
    loop = asyncio.get_running_loop()
    clock = self._clock or loop.time
    start = clock()
    query = _Query(np.asarray(x_B, np.float32), loop.create_future())
    deadline = None if self._deadline_s is None else loop.call_later(
        self._deadline_s, self._answer_default, query)
    coded, hedge_after_s = self._code is not None, self._hedge_after_s
    if self.policy is not None:
      self.policy.arrived(loop.time())
      coded, hedge_after_s = self.policy.choose(loop.time())
      coded = coded and self._code is not None
    if coded:
      self._join_group(query)
    else:
      query.on_output = self._on_plain
      self._request(query)
    if hedge_after_s is not None:
      loop.call_later(hedge_after_s, self._hedge, query)
    output, source = await query.answer
    if deadline is not None:
      deadline.cancel()
    self.counts[source] += 1
    return Prediction(output, source, clock() - start)

  # Uncoded serving and hedging.

  def _hedge(self, query):
    if not query.answer.done():
      self._request(query, "hedge")

  def _request(self, query, kind="base"):
    self.sent[kind] += 1
    request = self._base.submit(query.x_B)
    query.requests.append(request)
    request.add_done_callback(lambda r: query.on_output(query, r))

  def _on_plain(self, query, request):
    if request.cancelled():
      return
    if request.exception() is None:
      _settle(query, np.asarray(request.result()), "original")
      return
    self.counts["failure"] += 1
    if all(r.done() and (r.cancelled() or r.exception() is not None)
           for r in query.requests):
      self._answer_default(query)

  def _answer_default(self, query):
    b = query.x_B.shape[0]
    _settle(query, np.broadcast_to(self._default, (b,) + self._default.shape),
            "default")

  # Coded serving.

  def _join_group(self, query):
    group = self._open.get(query.x_B.shape)
    if group is None:
      group = self._open[query.x_B.shape] = _Group(self._code.k, self._code.r)
      if self._group_timeout_s is not None:
        group.timer = asyncio.get_running_loop().call_later(
            self._group_timeout_s, self._seal, group)
    j = len(group.queries)
    group.queries.append(query)
    query.on_output = lambda q, r: self._on_output(group, j, r)
    self._request(query)
    if len(group.queries) == self._code.k:
      self._seal(group)

  def _seal(self, group):
    """Encodes a full (or timed-out, zero-padded) group; sends the parities."""
    group.sealed = True
    if group.timer is not None:
      group.timer.cancel()
    x_BS = group.queries[0].x_B
    del self._open[x_BS.shape]
    k, m = self._code.k, len(group.queries)
    pad_BS = np.zeros_like(x_BS)
    x_BK = np.stack([q.x_B for q in group.queries] + [pad_BS] * (k - m), 1)
    for j in range(m, k):
      group.outputs[j] = np.broadcast_to(
          self._pad_y, (x_BS.shape[0],) + self._pad_y.shape)
    tic = time.perf_counter()
    parities_BR = self._encode(x_BK)
    self.encode_us.append(1e6 * (time.perf_counter() - tic))
    for i, pool in enumerate(self._parities):
      self.sent["parity"] += 1
      request = pool.submit(parities_BR[:, i])
      group.parity_requests.append(request)
      request.add_done_callback(
          lambda r, n=k + i: self._on_output(group, n, r))
    self._try_decode(group)

  def _on_output(self, group, n, request):
    """Output n of a group arrived (or failed)."""
    if request.cancelled():
      return
    data = n < len(group.queries)
    if request.exception() is not None:
      self.counts["failure"] += 1
      if data and not all(r.done() for r in group.queries[n].requests):
        return  # A hedged copy may still answer.
      group.failed[n] = True
      if sum(group.failed) > self._code.r:  # No longer decodable.
        for j, query in enumerate(group.queries):
          if group.failed[j]:
            self._answer_default(query)
      self._finish_if_answered(group)
      return
    group.outputs[n] = np.asarray(request.result())
    group.failed[n] = False  # A hedged copy answered after a failure.
    if data:
      _settle(group.queries[n], group.outputs[n], "original")
    self._try_decode(group)

  def _try_decode(self, group):
    """Rebuilds missing data outputs once any k of the k+r are back."""
    waiting = [j for j, q in enumerate(group.queries) if not q.answer.done()]
    available_N = np.array([y is not None for y in group.outputs])
    if group.sealed and waiting and available_N.sum() >= self._code.k:
      like = next(y for y in group.outputs if y is not None)
      y_BN = np.stack([like * 0 if y is None else y for y in group.outputs],
                      1)
      tic = time.perf_counter()
      y_BK = self._decode(y_BN, available_N)
      self.decode_us.append(1e6 * (time.perf_counter() - tic))
      for j in waiting:
        _settle(group.queries[j], y_BK[:, j], "reconstruction")
    self._finish_if_answered(group)

  def _finish_if_answered(self, group):
    """Withdraws parity requests nobody needs any more."""
    if group.sealed and all(q.answer.done() for q in group.queries):
      for request in group.parity_requests:
        request.cancel()


def _settle(query, output, source):
  """Answers a query unless another answer won; withdraws the losers."""
  if not query.answer.done():
    query.answer.set_result((output, source))
    for request in query.requests:
      request.cancel()
