"""The coding frontend of a prediction-serving system (paper §V-F).

Backend-agnostic and asyncio-based. A *pool* is anything with
`submit(x_B...) -> asyncio.Future` that resolves to the outputs `y_BC` of one
model instance (or raises when the instance failed); cancelling a future that
has not started service withdraws the request. A query is a batch `x_B...` of
B examples.

With a code, every k consecutive queries of the same shape form a coding
group, served by one of two layouts chosen from `code.systematic`:

- systematic (ParM, the paper): each query goes to the base-model pool as
  soon as it arrives, and once the group is full the frontend encodes it and
  sends the r parity queries to the parity-model pools. As soon as k of the
  group's k+r outputs are back while a data output is missing, it decodes
  and answers with the reconstruction; the first of {original,
  reconstruction} wins and the loser is withdrawn or ignored.
- non-systematic (ApproxIFER's Berrut code): a query waits for its group;
  once the group is full the frontend encodes it into N = k + r coded
  queries, worker n's to the base pool (n < k) or parity pool n - k (which
  must hold F too: the base model computes every coded query), and once
  any k = N - r outputs are back it decodes all k answers. No answer is F's
  output on its own query: every one is a reconstruction.

Beyond the paper:

- `group_timeout_s`: a partial group is sealed after this long, padded with
  zero queries (whose output F(0) is known, for a systematic code), so
  queries in a quiet period are protected without waiting for k arrivals;
- `deadline_s`: a query not answered by then gets the default prediction, as
  does a query whose own request failed when its group cannot be decoded;
- counts of originals, reconstructions, defaults and failed requests, and the
  encode and decode time of every group;
- a linear code (summation, linear, Berrut, spline) is encoded and decoded
  with NumPy on the host, inline: one small matrix product each, with the
  decoding matrix of each erasure pattern cached (`_coding.Host`); any
  other code through its jitted functions (`_coding.Jitted`);
- `executor`: the jitted encode and decode run there (e.g. one thread), off
  the event loop, instead of inline.

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
import logging
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from jaxcc import codes
from jaxcc.serving import _coding
from jaxcc.serving import _logs

SOURCES = ("original", "reconstruction", "default")
_log = _logs.Limited(logging.getLogger(__name__))


class Prediction(NamedTuple):
  """What the frontend returns for one query.

  `source`: "original" (F's output on this query), "reconstruction" (the
  decoder's output: a rebuilt late output of a systematic code, or any
  answer of a non-systematic one) or "default".
  """
  output: np.ndarray  # (B, C)
  source: str  # one of SOURCES
  latency_s: float


class _Query:
  """A query in flight: its input, answer and outstanding requests."""

  def __init__(self, x_B, answer):
    self.x_B = x_B
    self.answer = answer  # future of (output, source)
    self.requests = []  # of F on this very query (original, hedged copy)
    self.on_output = None  # callback(query, request) of those requests

  def waits_for_own(self) -> bool:
    """Whether a request of F on this query is still out."""
    return not all(r.done() for r in self.requests)


class _Group:
  """A coding group: up to k queries, then its coded requests once sealed."""

  def __init__(self, k, r):
    self.queries = []
    self.outputs = [None] * (k + r)  # worker n's output
    self.failed = [False] * (k + r)
    self.coded_requests = []  # parities, or all N coded queries
    self.sealed = False
    self.decoding = False  # a decode is running (in the executor)
    self.timer = None

  def undecodable(self, r) -> bool:
    return sum(self.failed) > r


class _Systematic:
  """The k queries go to F as they are; r parities to the parity pools.

  Worker n < k is query n itself, so its output answers it ("original").
  """
  sends_queries = True  # Each query goes to F as soon as it arrives.

  def pad_outputs(self, group, k, pad_y_B):
    """Padded slots are zero queries, never sent: their output is F(0)."""
    for j in range(len(group.queries), k):
      group.outputs[j] = pad_y_B

  def routes(self, k, base, parities) -> list:
    """`(worker n, pool, kind)` of each encoded query, in encoded order."""
    del base
    return [(k + i, pool, "parity") for i, pool in enumerate(parities)]

  def answers(self, group, n) -> bool:
    """Whether worker n's output answers query n as its original."""
    return n < len(group.queries)

  def stranded(self, group) -> list:
    """Queries an undecodable group leaves without an answer."""
    return [q for j, q in enumerate(group.queries) if group.failed[j]]


class _NonSystematic:
  """All N = k + r workers compute F on coded queries; every answer is
  decoded from any k of their outputs.

  Workers n < k use the base pool, n >= k parity pool n - k (holding F).
  """
  sends_queries = False  # A query reaches F only encoded (or hedged).

  def pad_outputs(self, group, k, pad_y_B):
    del group, k, pad_y_B  # Padded queries are encoded like the others.

  def routes(self, k, base, parities) -> list:
    return ([(n, base, "base") for n in range(k)]
            + [(k + i, pool, "parity") for i, pool in enumerate(parities)])

  def answers(self, group, n) -> bool:
    del group, n
    return False

  def stranded(self, group) -> list:
    return list(group.queries)


class Frontend:
  """Answers queries from model-instance pools, coded or not.

  Args:
    base_pool: the pool of base-model (F) instances.
    default_output: the `(C,)` default prediction.
    code: a `jaxcc.codes.Code` with parameters `code_params`; None serves
      without coding. Systematic or not (`code.systematic`).
    parity_pools: with a code, one pool per parity (r pools): of parity
      models, or of F for a code whose parities F computes (Berrut, and
      every non-systematic code).
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
    executor: a `concurrent.futures.Executor` in which to run a jitted
      encode and decode, off the event loop (None: inline, as the simulator
      needs). A linear code's NumPy coding always runs inline.
  """

  def __init__(self, base_pool, default_output, *,
               code: Optional[codes.Code] = None, parity_pools: Sequence = (),
               code_params=None, group_timeout_s: Optional[float] = None,
               deadline_s: Optional[float] = None,
               hedge_after_s: Optional[float] = None, policy=None,
               clock: Optional[Callable[[], float]] = None, executor=None):
    if code is not None and len(parity_pools) != code.r:
      raise ValueError(f"a code with r={code.r} needs {code.r} parity pools, "
                       f"got {len(parity_pools)}")
    if hedge_after_s is not None and hedge_after_s < 0:
      raise ValueError(f"hedge_after_s must be >= 0, got {hedge_after_s}")
    self._base = base_pool
    self._parities = tuple(parity_pools)
    self._code = code
    self._layout = None if code is None else (
        _Systematic() if code.systematic else _NonSystematic())
    self._code_params = {} if code_params is None else code_params
    self._default = np.asarray(default_output, np.float32)
    self._group_timeout_s = group_timeout_s
    self._deadline_s = deadline_s
    self._hedge_after_s = hedge_after_s
    self.policy = policy
    self._clock = clock
    self._executor = executor
    self._open = {}  # query shape -> the group being filled
    self._pad_y = None
    self.counts = collections.Counter({s: 0 for s in SOURCES + ("failure",)})
    self.sent = collections.Counter({s: 0 for s in ("base", "hedge",
                                                    "parity")})
    self.encode_us, self.decode_us = [], []
    if code is not None:
      self._coder = _coding.coder(code, self._code_params)
      self._encode = _timed(self.encode_us, self._coder.encode)
      self._decode = _timed(self.decode_us, self._coder.decode)

  @property
  def systematic(self) -> Optional[bool]:
    """Whether the code is systematic (None without a code)."""
    return None if self._code is None else self._code.systematic

  async def start(self, input_shape, max_batch: int = 1) -> None:
    """Learns F(0) (for padding, and the output shape); prepares the coder.

    A jitted coder is compiled for every batch-size bucket up to
    `max_batch` (`_batching`) before any query arrives, so no query waits
    for a compilation (nor does the event loop, later); a linear code's
    NumPy coder is checked against the code's own encode and decode.

    Args:
      input_shape: the shape of one example (no batch axis).
      max_batch: the largest query batch.
    """
    if max_batch < 1:
      raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if self._code is None:
      return
    k, n = self._code.k, self._code.k + self._code.r
    pad_BS = np.zeros((1,) + tuple(input_shape), np.float32)
    pad_y = np.asarray(await self._base.submit(pad_BS))[0]
    rng = np.random.default_rng(0)
    self._coder.prepare(
        self._code_params,
        rng.normal(size=(max_batch, k) + pad_BS.shape[1:]).astype(np.float32),
        rng.normal(size=(max_batch, n) + pad_y.shape).astype(np.float32))
    self._pad_y = pad_y

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

  def _on_plain(self, query, request, group=None):
    """F's own output on `query` came back (or failed): its first request,
    or a hedged copy. In a non-systematic `group`, a failed copy leaves the
    query to the decoder unless the group can no longer be decoded."""
    if request.cancelled():
      return
    if request.exception() is None:
      _settle(query, np.asarray(request.result()), "original")
      return
    self.counts["failure"] += 1
    if not query.waits_for_own() and (
        group is None or group.undecodable(self._code.r)):
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
    if self._layout.sends_queries:
      query.on_output = lambda q, r: self._on_output(group, j, r)
      self._request(query)
    else:  # Only hedged copies of the query itself come back to it.
      query.on_output = lambda q, r: self._on_plain(q, r, group)
    if len(group.queries) == self._code.k:
      self._seal(group)

  def _seal(self, group):
    """Encodes a full (or timed-out, zero-padded) group."""
    group.sealed = True
    if group.timer is not None:
      group.timer.cancel()
    x_BS = group.queries[0].x_B
    del self._open[x_BS.shape]
    k, m = self._code.k, len(group.queries)
    self._layout.pad_outputs(group, k, np.broadcast_to(
        self._pad_y, (x_BS.shape[0],) + self._pad_y.shape))
    x_BK = np.stack([q.x_B for q in group.queries]
                    + [np.zeros_like(x_BS)] * (k - m), 1)
    self._run(group, self._encode, (x_BK,),
              lambda coded: self._send(group, coded))

  def _send(self, group, coded_BM):
    """Sends a sealed group's encoded queries (parities or all N)."""
    if all(q.answer.done() for q in group.queries):
      return  # Answered (default) while it was being encoded.
    routes = self._layout.routes(self._code.k, self._base, self._parities)
    for m, (n, pool, kind) in enumerate(routes):
      self.sent[kind] += 1
      request = pool.submit(coded_BM[:, m])
      group.coded_requests.append(request)
      request.add_done_callback(lambda r, n=n: self._on_output(group, n, r))
    self._try_decode(group)

  def _on_output(self, group, n, request):
    """Output n of a group arrived (or failed)."""
    if request.cancelled():
      return
    answers = self._layout.answers(group, n)
    if request.exception() is not None:
      self.counts["failure"] += 1
      if answers and group.queries[n].waits_for_own():
        return  # A hedged copy may still answer.
      group.failed[n] = True
      if group.undecodable(self._code.r):
        for query in self._layout.stranded(group):
          if not query.waits_for_own():
            self._answer_default(query)
      self._finish_if_answered(group)
      return
    group.outputs[n] = np.asarray(request.result())
    group.failed[n] = False  # A hedged copy answered after a failure.
    if answers:
      _settle(group.queries[n], group.outputs[n], "original")
    self._try_decode(group)

  def _try_decode(self, group):
    """Decodes once any k of the k+r outputs are back and a query waits."""
    available_N = np.array([y is not None for y in group.outputs])
    if (not group.sealed or group.decoding or available_N.sum() < self._code.k
        or all(q.answer.done() for q in group.queries)):
      self._finish_if_answered(group)
      return
    like = next(y for y in group.outputs if y is not None)
    y_BN = np.stack([like * 0 if y is None else y for y in group.outputs], 1)
    group.decoding = True
    self._run(group, self._decode, (y_BN, available_N),
              lambda y_BK: self._answer_decoded(group, y_BK))

  def _answer_decoded(self, group, y_BK):
    group.decoding = False
    for j, query in enumerate(group.queries):
      _settle(query, y_BK[:, j], "reconstruction")
    self._finish_if_answered(group)

  def _finish_if_answered(self, group):
    """Withdraws coded requests nobody needs any more."""
    if group.sealed and all(q.answer.done() for q in group.queries):
      for request in group.coded_requests:
        request.cancel()

  def _run(self, group, fn, args, then):
    """`then(fn(*args))`: inline, or (a jitted coder with an executor) `fn`
    in the executor and `then` back on the event loop (if `fn` fails there,
    the group's queries get the default)."""
    if self._executor is None or not self._coder.offload:
      then(fn(*args))
      return
    done = asyncio.get_running_loop().run_in_executor(self._executor, fn,
                                                      *args)
    done.add_done_callback(lambda f: self._ran(group, f, then))

  def _ran(self, group, done, then):
    if done.exception() is None:
      then(done.result())
      return
    _log.error("coding", "encode or decode failed: %r", done.exception())
    group.decoding = False
    for query in group.queries:
      self._answer_default(query)
    self._finish_if_answered(group)


def _timed(times_us, fn):
  """`fn`, appending the microseconds of every call to `times_us`."""
  def call(*args):
    tic = time.perf_counter()
    out = fn(*args)
    times_us.append(1e6 * (time.perf_counter() - tic))
    return out
  return call


def _settle(query, output, source):
  """Answers a query unless another answer won; withdraws the losers."""
  if not query.answer.done():
    query.answer.set_result((output, source))
    for request in query.requests:
      request.cancel()
