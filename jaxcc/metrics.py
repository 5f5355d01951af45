"""Metrics of a coded system on one split: A_a, A_d, reconstruction, A_o(f).

Protocol (paper §III-B): the split's samples are placed at random into groups
of k; every group is encoded, its parity outputs computed (by parity models,
or by F itself for learned and training-free codes), and every erasure
pattern is decoded. Each reconstruction of an erased slot is scored against
the true label (degraded, A_d) and against F's own output (reconstruction).
`degraded_<metric>_all_slots` scores all k outputs a client receives under a
pattern instead (F's own where they arrived), the convention of ApproxIFER's
figures. The task (`jaxcc.tasks`) says what a score is: accuracy and top-5
for classes, IoU for boxes.

A non-systematic code (`Code.systematic` False: ApproxIFER's Berrut code,
spline codes) runs F on N = k + r coded queries and decodes all k
predictions, so: its patterns are any `missing` of the N workers
(`erasures.straggler_patterns`); every one of the k decoded outputs is a
reconstruction (A_d and `_all_slots` coincide); and `available_<m>` (A_a)
scores the decoded predictions with every worker arrived, not F's own
outputs, which `base_<m>` scores for every code.
"""

import functools

import jax
import numpy as np

import jax.numpy as jnp

from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import models

OVERALL_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
_GROUP_BATCH = 128


def evaluate_split(exp, base_state, stage2_state, split, *, seed,
                   missing=None, outputs_NC=None) -> dict:
  """Metrics of `exp`'s coded system on `split` (test or validation).

  `missing` is the number of unavailable outputs per pattern (default r);
  `outputs_NC` are F's outputs on the split when already computed. A spline
  code configured with `spline.search` first gets its lambdas from
  `choose_spline_lambdas` on the validation split (never `split`); the
  results' `spline_search` says which.
  """
  code, k = exp.code, exp.code.k
  base_vars = models.variables(base_state.params, base_state.batch_stats)
  if outputs_NC is None:
    outputs_NC = models.predict(exp.model, base_vars, split.image,
                                exp.dataset.mean, exp.dataset.std)
  results = {}
  if searches_spline_lambdas(exp.config):
    code, results["spline_search"] = choose_spline_lambdas(
        exp, base_vars, seed=seed, missing=missing)
  groups_GK = data.test_groups(len(split.label), k, seed)
  code_params = exp.approach.code_params(stage2_state)
  y_GNC = worker_outputs(exp, code, base_vars, stage2_state, split.image,
                         outputs_NC, groups_GK)
  patterns_PN = erasures.decoding_patterns(k, code.r, code.systematic,
                                           missing)
  recon_PGKC = np.asarray(decode_all(code, code_params, y_GNC, patterns_PN))
  decoded_GKC = None if code.systematic else np.asarray(decode_all(
      code, code_params, y_GNC, np.ones((1, k + code.r), bool)))[0]
  results.update(coded_metrics(
      exp.task, outputs_NC, split.label, groups_GK,
      y_GNC[:, k:] if code.systematic else y_GNC, recon_PGKC, patterns_PN,
      systematic=code.systematic, decoded_GKC=decoded_GKC))
  return results


def worker_outputs(exp, code, base_vars, stage2_state, images, outputs_NC,
                   groups_GK) -> np.ndarray:
  """`y_GNC`, what the N workers of every group return.

  Systematic codes: F's outputs on the k inputs, then the r parity outputs;
  non-systematic codes: F on each of the N coded queries.
  """
  parity_vars, apply = exp.approach.parity_network(base_vars, stage2_state)
  coded_GMC = parity_outputs(code, exp.model, apply, parity_vars,
                             exp.approach.code_params(stage2_state), images,
                             groups_GK, exp.dataset.mean, exp.dataset.std)
  if not code.systematic:
    return coded_GMC
  return np.concatenate([outputs_NC[groups_GK], coded_GMC], axis=1)


def searches_spline_lambdas(config) -> bool:
  """Whether `config` leaves a spline code's lambdas to the validation split."""
  return config.code == "spline" and config.spline.search


def choose_spline_lambdas(exp, base_vars, *, seed, missing=None) -> tuple:
  """`(code, summary)`: `exp`'s spline code with lambdas chosen on validation.

  `codes.search_lambdas` scores every pair of its grid by 1 - the
  reconstruction agreement (`task.agreement` of all k decoded predictions
  with F's own outputs, under every pattern of `missing` stragglers) on the
  validation split, placed into groups of k with `seed`: the lambdas that
  best reproduce F. The test split is never read.
  """
  split, task = exp.dataset.validation, exp.task
  k, r = exp.code.k, exp.code.r
  groups_GK = data.test_groups(len(split.label), k, seed)
  patterns_PN = erasures.straggler_patterns(k, r, missing)
  outputs_GKC = models.predict(exp.model, base_vars, split.image,
                               exp.dataset.mean, exp.dataset.std)[groups_GK]
  target_MC = _flat(np.broadcast_to(
      _flat(outputs_GKC), (len(patterns_PN),) + _flat(outputs_GKC).shape))
  # Decoding is linear in the outputs: the (P, k, N) weights of each
  # lambda_decoder are the decoded identity.
  eye_1NN = np.eye(k + r, dtype=np.float32)[None]

  @functools.lru_cache(maxsize=None)
  def weights_PKN(lambda_decoder):
    code = codes.spline(k, r, 0.0, lambda_decoder)
    return decode_all(code, {}, eye_1NN, patterns_PN)[:, 0]

  @functools.lru_cache(maxsize=None)
  def y_GNC(lambda_encoder):
    return worker_outputs(exp, codes.spline(k, r, lambda_encoder, 0.0),
                          base_vars, None, split.image, None, groups_GK)

  def loss(lambda_encoder, lambda_decoder):
    recon_PGKC = _combine(weights_PKN(lambda_decoder), y_GNC(lambda_encoder))
    recon_MC = np.asarray(recon_PGKC).reshape(target_MC.shape)
    return 1.0 - float(np.mean(task.agreement(recon_MC, target_MC)))

  lambda_e, lambda_d, losses = codes.search_lambdas(loss)
  chosen = codes.spline(k, r, lambda_e, lambda_d)
  return chosen, {
      "code": chosen.name, "lambda_encoder": lambda_e,
      "lambda_decoder": lambda_d,
      f"validation_reconstruction_{task.primary}": (
          1.0 - losses[lambda_e, lambda_d]),
      "validation_groups": int(len(groups_GK))}


@jax.jit
def _combine(weights_PKN, y_GNC):
  return jnp.einsum("pkn,gnc->pgkc", weights_PKN, y_GNC,
                    precision=jax.lax.Precision.HIGHEST)


def parity_outputs(code, model, apply, parity_vars, code_params, images,
                   groups_GK, mean, std, batch_size=_GROUP_BATCH):
  """Parity outputs `(G, r, C)` of the groups `groups_GK` of `images`.

  `apply(model, parity_vars, parities_BR) -> (B, r, C)` computes them
  (`models.stacked_apply` for parity models, `models.apply_groups` for F).
  For a non-systematic code: F's outputs `(G, N, C)` on the N coded queries.
  """
  fn = _parity_fn(code, model, apply, tuple(mean), tuple(std))
  return np.concatenate([
      fn(code_params, parity_vars, images[chunk])[:n]
      for chunk, n in models.padded_chunks(groups_GK, batch_size)])


@functools.partial(jax.jit, static_argnums=0)
def decode_all(code, code_params, y_GN, patterns_PN):
  """Decodes every pattern at once: `(P, G, k, C)`; compiled once."""
  return jax.vmap(code.decode, in_axes=(None, None, 0))(code_params, y_GN,
                                                         patterns_PN)


def coded_metrics(task, outputs_NC, labels_N, groups_GK, y_coded_GMC,
                  recon_PGKC, patterns_PN, *, systematic=True,
                  decoded_GKC=None) -> dict:
  """Every metric of `task` for F, the reconstructions and the default.

  `y_coded_GMC` are the parity outputs (systematic) or all worker outputs,
  only checked for being finite; `recon_PGKC` the decoded groups under each
  pattern; `decoded_GKC` (non-systematic codes only) the decoded groups with
  every worker arrived. Fields (`m` ranges over `task.metrics`, `p` is the
  primary metric): `base_m` (F's own outputs), `available_m` (A_a: F's
  outputs, or the decoded ones with no straggler for a non-systematic
  code), `degraded_m` (A_d: reconstructed slots, see
  `erasures.reconstructed_slots`), `degraded_p_all_slots` (all k slots of a
  decoded group), `reconstruction_p` (reconstructions against F's
  outputs), `default_m`, `overall_p` (A_o(f) for f in OVERALL_FRACTIONS),
  `per_pattern`, `num_groups`, `finite_parity_outputs`; `task.null_fields`
  are None.
  """
  k = groups_GK.shape[1]
  p = task.primary
  labels_GK, outputs_GKC = labels_N[groups_GK], outputs_NC[groups_GK]
  if systematic:
    available_scores = task.score(outputs_NC, labels_N)
  elif decoded_GKC is None:
    raise ValueError("a non-systematic code's A_a needs decoded_GKC, its "
                     "decoded outputs with every worker arrived")
  else:
    available_scores = task.score(_flat(decoded_GKC), _flat(labels_GK))
  reconstructed_PK = erasures.reconstructed_slots(patterns_PN, k, systematic)
  degraded = {m: [] for m in task.metrics}
  agreement, all_slots, per_pattern = [], [], []
  for recon_GKC, available_N, erased_K in zip(recon_PGKC, patterns_PN,
                                              reconstructed_PK):
    recon_MC = _flat(recon_GKC[:, erased_K])
    scores = task.score(recon_MC, _flat(labels_GK[:, erased_K]))
    agree_M = task.agreement(recon_MC, _flat(outputs_GKC[:, erased_K]))
    for m in task.metrics:
      degraded[m].append(np.asarray(scores[m], np.float64))
    agreement.append(np.asarray(agree_M, np.float64))
    all_slots.append(np.asarray(task.score(_flat(recon_GKC),
                                           _flat(labels_GK))[p], np.float64))
    per_pattern.append({
        "missing": np.flatnonzero(~available_N).tolist(),
        f"degraded_{p}": float(np.mean(scores[p])),
        f"reconstruction_{p}": float(np.mean(agree_M)),
    })
  base = {m: float(np.mean(v))
          for m, v in task.score(outputs_NC, labels_N).items()}
  available = {m: float(np.mean(v)) for m, v in available_scores.items()}
  degraded = {m: float(np.concatenate(v).mean()) for m, v in degraded.items()}
  results = dict.fromkeys(task.null_fields)
  for m in task.metrics:
    results[f"base_{m}"] = base[m]
    results[f"available_{m}"] = available[m]
    results[f"degraded_{m}"] = degraded[m]
  results[f"degraded_{p}_all_slots"] = float(np.concatenate(all_slots).mean())
  results[f"reconstruction_{p}"] = float(np.concatenate(agreement).mean())
  results.update({f"default_{m}": v
                  for m, v in task.default(labels_N).items()})
  results[f"overall_{p}"] = {
      str(f): (1 - f) * available[p] + f * degraded[p]
      for f in OVERALL_FRACTIONS}
  results.update(per_pattern=per_pattern, num_groups=int(len(groups_GK)),
                 finite_parity_outputs=bool(np.isfinite(y_coded_GMC).all()))
  return results


def _flat(y_GM_C):
  """`(G, M, C) -> (G * M, C)`."""
  return y_GM_C.reshape((-1,) + y_GM_C.shape[2:])


@functools.lru_cache(maxsize=None)
def _parity_fn(code, model, apply, mean, std):
  mean, std = np.float32(mean), np.float32(std)

  @jax.jit
  def fn(code_params, parity_vars, images_BK):
    x_BK = data.normalize(images_BK, mean, std)
    return apply(model, parity_vars, code.encode(code_params, x_BK))
  return fn
