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
"""

import functools

import jax
import numpy as np

from jaxcc import data
from jaxcc import erasures
from jaxcc import models

OVERALL_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
_GROUP_BATCH = 128


def evaluate_split(exp, base_state, stage2_state, split, *, seed,
                   missing=None, outputs_NC=None) -> dict:
  """Metrics of `exp`'s coded system on `split` (test or validation).

  `missing` is the number of unavailable outputs per pattern (default r);
  `outputs_NC` are F's outputs on the split when already computed.
  """
  k, r = exp.code.k, exp.code.r
  base_vars = models.variables(base_state.params, base_state.batch_stats)
  if outputs_NC is None:
    outputs_NC = models.predict(exp.model, base_vars, split.image,
                                exp.dataset.mean, exp.dataset.std)
  groups_GK = data.test_groups(len(split.label), k, seed)
  parity_vars, apply = exp.approach.parity_network(base_vars, stage2_state)
  y_par_GRC = parity_outputs(exp.code, exp.model, apply, parity_vars,
                             exp.approach.code_params(stage2_state),
                             split.image, groups_GK, exp.dataset.mean,
                             exp.dataset.std)
  y_GNC = np.concatenate([outputs_NC[groups_GK], y_par_GRC], axis=1)
  patterns_PN = erasures.patterns(k, r, missing)
  recon_PGKC = np.asarray(decode_all(
      exp.code, exp.approach.code_params(stage2_state), y_GNC, patterns_PN))
  return coded_metrics(exp.task, outputs_NC, split.label, groups_GK,
                       y_par_GRC, recon_PGKC, patterns_PN)


def parity_outputs(code, model, apply, parity_vars, code_params, images,
                   groups_GK, mean, std, batch_size=_GROUP_BATCH):
  """Parity outputs `(G, r, C)` of the groups `groups_GK` of `images`.

  `apply(model, parity_vars, parities_BR) -> (B, r, C)` computes them
  (`models.stacked_apply` for parity models, `models.apply_groups` for F).
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


def coded_metrics(task, outputs_NC, labels_N, groups_GK, y_par_GRC,
                  recon_PGKC, patterns_PN) -> dict:
  """Every metric of `task` for F, the reconstructions and the default.

  Fields (`m` ranges over `task.metrics`, `p` is the primary metric):
  `available_m` (F's outputs), `degraded_m` (reconstructions of erased
  slots), `degraded_p_all_slots` (all k slots of a decoded group),
  `reconstruction_p` (reconstructions against F's outputs), `default_m`,
  `overall_p` (A_o(f) for f in OVERALL_FRACTIONS), `per_pattern`,
  `num_groups`, `finite_parity_outputs`; `task.null_fields` are None.
  """
  k = groups_GK.shape[1]
  p = task.primary
  labels_GK, outputs_GKC = labels_N[groups_GK], outputs_NC[groups_GK]
  degraded = {m: [] for m in task.metrics}
  agreement, all_slots, per_pattern = [], [], []
  for recon_GKC, available_N in zip(recon_PGKC, patterns_PN):
    erased_K = ~available_N[:k]
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
  available = {m: float(np.mean(v))
               for m, v in task.score(outputs_NC, labels_N).items()}
  degraded = {m: float(np.concatenate(v).mean()) for m, v in degraded.items()}
  results = dict.fromkeys(task.null_fields)
  for m in task.metrics:
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
                 finite_parity_outputs=bool(np.isfinite(y_par_GRC).all()))
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
