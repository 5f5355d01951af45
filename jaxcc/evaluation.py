"""Evaluation: available, degraded and overall accuracy of a coded system.

Protocol (paper §III-B): the test samples are placed at random into groups of
k; every group is encoded, its parity outputs computed (by parity models, or by
F itself for learned and training-free codes), and every erasure pattern is
decoded. Each reconstruction is compared with the true label (degraded accuracy
A_d) and with F's own prediction (reconstruction accuracy).

Localisation (a regression task) is scored by the IoU of boxes instead (paper
§V-E): predicted and reconstructed boxes are cut to the image, then compared
with the true box (mean IoU and the fraction with IoU >= 0.75) and, for
reconstructions, with F's own box. Its accuracy fields are null.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import data
from jaxcc import erasures
from jaxcc import experiment as experiment_lib
from jaxcc import localization

OVERALL_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
_BATCH = 512
# Classification fields, null in the results of a localisation task.
_ACCURACY_FIELDS = ("available_accuracy", "degraded_accuracy",
                    "reconstruction_accuracy", "default_accuracy",
                    "overall_accuracy", "available_top5_accuracy",
                    "degraded_top5_accuracy", "default_top5_accuracy")
_AT = f"iou_at_{localization.IOU_THRESHOLD}"


def predict(model, model_variables, images, mean, std, batch_size=_BATCH):
  """F's outputs `(N, C)` on uint8 images, in fixed-size padded batches."""
  fn = _predict_fn(model, tuple(mean), tuple(std))
  return np.concatenate([fn(model_variables, chunk)[:n]
                         for chunk, n in _chunks(images, batch_size)])


def parity_outputs(exp, base_state, stage2_state, images, groups_GK,
                   batch_size=_BATCH // 4):
  """Parity outputs `(G, r, C)` of the test groups `groups_GK`."""
  fn = _parity_fn(exp.code, exp.model, exp.approach,
                  tuple(exp.dataset.mean), tuple(exp.dataset.std))
  code_params = stage2_state.params if exp.approach == "learned" else {}
  if exp.approach == "parity-model":
    parity_vars = experiment_lib.variables(stage2_state.params,
                                           stage2_state.batch_stats)
  else:
    parity_vars = experiment_lib.variables(base_state.params,
                                           base_state.batch_stats)
  return np.concatenate([
      fn(code_params, parity_vars, images[chunk])[:n]
      for chunk, n in _chunks(groups_GK, batch_size)])


@functools.partial(jax.jit, static_argnums=0)
def decode_all(code, code_params, y_GN, patterns_PN):
  """Decodes every pattern at once: `(P, G, k, C)`; compiled once."""
  return jax.vmap(code.decode, in_axes=(None, None, 0))(code_params, y_GN,
                                                         patterns_PN)


def coded_metrics(outputs_NC, labels_N, groups_GK, y_par_GRC, recon_PGKC,
                  patterns_PN, k):
  """Accuracy metrics of reconstructions (see `evaluate` for the fields)."""
  num_classes = outputs_NC.shape[-1]
  pred_N = outputs_NC.argmax(-1)
  erased_PK = ~patterns_PN[:, :k]
  labels_GK, pred_GK = labels_N[groups_GK], pred_N[groups_GK]
  hits = {"degraded": [], "reconstruction": [], "degraded_top5": []}
  per_pattern = []
  for recon_GKC, erased_K in zip(recon_PGKC, erased_PK):
    recon = recon_GKC[:, erased_K]  # (G, m, C)
    top1 = recon.argmax(-1)
    lab = labels_GK[:, erased_K]
    correct = top1 == lab
    agree = top1 == pred_GK[:, erased_K]
    top5 = _in_top5(recon, lab)
    hits["degraded"].append(correct.ravel())
    hits["reconstruction"].append(agree.ravel())
    hits["degraded_top5"].append(top5.ravel())
    per_pattern.append({
        "missing": np.flatnonzero(~patterns_PN[len(per_pattern)]).tolist(),
        "degraded_accuracy": float(correct.mean()),
        "reconstruction_accuracy": float(agree.mean()),
    })
  available = float((pred_N == labels_N).mean())
  degraded = float(np.concatenate(hits["degraded"]).mean())
  return {
      "available_accuracy": available,
      "degraded_accuracy": degraded,
      "reconstruction_accuracy": float(
          np.concatenate(hits["reconstruction"]).mean()),
      "default_accuracy": 1.0 / num_classes,
      "overall_accuracy": {str(f): (1 - f) * available + f * degraded
                           for f in OVERALL_FRACTIONS},
      "available_top5_accuracy": float(_in_top5(outputs_NC, labels_N).mean()),
      "degraded_top5_accuracy": float(
          np.concatenate(hits["degraded_top5"]).mean()),
      "default_top5_accuracy": min(5, num_classes) / num_classes,
      "per_pattern": per_pattern,
      "num_groups": int(len(groups_GK)),
      "finite_parity_outputs": bool(np.isfinite(y_par_GRC).all()),
  }


def coded_box_metrics(outputs_N4, boxes_N4, groups_GK, y_par_GR4, recon_PGK4,
                      patterns_PN, k, default_box):
  """IoU metrics of reconstructed boxes (see `evaluate` for the fields)."""
  pred_N4 = localization.clip_to_image(outputs_N4)
  available_N = localization.iou(pred_N4, boxes_N4)
  boxes_GK4, pred_GK4 = boxes_N4[groups_GK], pred_N4[groups_GK]
  degraded, reconstruction, per_pattern = [], [], []
  for recon_GK4, available in zip(recon_PGK4, patterns_PN):
    erased_K = ~available[:k]
    recon = localization.clip_to_image(recon_GK4[:, erased_K])
    degraded.append(localization.iou(recon, boxes_GK4[:, erased_K]).ravel())
    reconstruction.append(
        localization.iou(recon, pred_GK4[:, erased_K]).ravel())
    per_pattern.append({
        "missing": np.flatnonzero(~available).tolist(),
        "degraded_mean_iou": float(degraded[-1].mean()),
        "reconstruction_mean_iou": float(reconstruction[-1].mean()),
    })
  degraded_N = np.concatenate(degraded)
  available, degraded = float(available_N.mean()), float(degraded_N.mean())
  at = localization.IOU_THRESHOLD
  return {
      **dict.fromkeys(_ACCURACY_FIELDS),
      "available_mean_iou": available,
      f"available_{_AT}": float((available_N >= at).mean()),
      "degraded_mean_iou": degraded,
      f"degraded_{_AT}": float((degraded_N >= at).mean()),
      "reconstruction_mean_iou": float(np.concatenate(reconstruction).mean()),
      "default_mean_iou": float(localization.iou(default_box,
                                                 boxes_N4).mean()),
      "overall_mean_iou": {str(f): (1 - f) * available + f * degraded
                           for f in OVERALL_FRACTIONS},
      "per_pattern": per_pattern,
      "num_groups": int(len(groups_GK)),
      "finite_parity_outputs": bool(np.isfinite(y_par_GR4).all()),
  }


def evaluate_split(exp, base_state, stage2_state, split, *, seed, missing=None,
                   outputs_NC=None):
  """Metrics of the coded system on one split (test or validation)."""
  cfg = exp.config
  base_vars = experiment_lib.variables(base_state.params,
                                       base_state.batch_stats)
  if outputs_NC is None:
    outputs_NC = predict(exp.model, base_vars, split.image, exp.dataset.mean,
                         exp.dataset.std)
  groups_GK = data.test_groups(len(split.label), cfg.k, seed)
  y_par = parity_outputs(exp, base_state, stage2_state, split.image,
                         groups_GK)
  y_GN = np.concatenate([outputs_NC[groups_GK], y_par], axis=1)
  patterns_PN = erasures.patterns(cfg.k, cfg.r, missing)
  code_params = stage2_state.params if exp.approach == "learned" else {}
  recon = np.asarray(decode_all(exp.code, code_params, y_GN, patterns_PN))
  if exp.dataset.task == data.LOCALIZATION:
    # Default prediction: the mean training box, whatever the input.
    return coded_box_metrics(outputs_NC, split.label, groups_GK, y_par, recon,
                             patterns_PN, cfg.k,
                             exp.dataset.train.label.mean(0))
  return coded_metrics(outputs_NC, split.label, groups_GK, y_par, recon,
                       patterns_PN, cfg.k)


def evaluate(config, workdir: str) -> dict:
  """Restores the trained stages, writes `eval.json` and a plot of A_o(f)."""
  exp = experiment_lib.setup(config, workdir)
  base_state = experiment_lib.restore_base(exp)
  stage2_state = (experiment_lib.restore_stage2(exp, base_state)
                  if exp.approach != "none" else None)
  results = evaluate_split(exp, base_state, stage2_state, exp.dataset.test,
                           seed=config.test_group_seed,
                           missing=config.get("eval_missing") or None)
  results.update(k=config.k, r=config.r, dataset=config.dataset,
                 model=config.model, code=exp.code.name, approach=exp.approach,
                 task=exp.dataset.task)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(results, f, indent=2)
    plot_overall_accuracy(results,
                          os.path.join(workdir, "overall_accuracy.png"))
  experiment_lib.log(format_table(results))
  return results


def format_table(results: dict) -> str:
  rows = [
      ("dataset / model", f"{results['dataset']} / {results['model']}"),
      ("code", f"{results['code']} ({results['approach']})"),
  ]
  if results.get("task") == data.LOCALIZATION:
    rows += [
        ("available mean IoU", _iou(results, "available")),
        ("degraded mean IoU", _iou(results, "degraded")),
        ("reconstruction mean IoU (vs F)",
         f"{results['reconstruction_mean_iou']:.3f}"),
        ("default (mean train box)", f"{results['default_mean_iou']:.3f}"),
    ] + [(f"overall mean IoU (f={f})", f"{v:.3f}")
         for f, v in results["overall_mean_iou"].items()]
  else:
    rows += [
        ("available accuracy A_a", _pct(results["available_accuracy"])),
        ("degraded accuracy A_d", _pct(results["degraded_accuracy"])),
        ("reconstruction accuracy", _pct(results["reconstruction_accuracy"])),
        ("default prediction", _pct(results["default_accuracy"])),
        ("A_a top-5 / A_d top-5",
         f"{_pct(results['available_top5_accuracy'])}"
         f" / {_pct(results['degraded_top5_accuracy'])}"),
    ] + [(f"overall A_o(f={f})", _pct(v))
         for f, v in results["overall_accuracy"].items()]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def plot_overall_accuracy(results: dict, path: str) -> None:
  """A_o(f) (or overall mean IoU) against F's own, as the paper's Fig. 9."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if results.get("task") == data.LOCALIZATION:
    metric, scale, unit = "mean_iou", 1, "mean IoU"
  else:
    metric, scale, unit = "accuracy", 100, "accuracy (%)"
  overall = results[f"overall_{metric}"]
  fractions = [float(f) for f in overall]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot(fractions, [scale * v for v in overall.values()], "o-",
          label="overall, with reconstructions")
  ax.axhline(scale * results[f"available_{metric}"], color="tab:orange",
             label="all predictions available")
  ax.axhline(scale * results[f"default_{metric}"], color="gray", ls="--",
             label="default prediction")
  ax.set_xscale("symlog", linthresh=0.01)
  ax.set_xlabel("fraction f of unavailable predictions")
  ax.set_ylabel(f"overall {unit}")
  ax.set_title(f"{results['dataset']}, {results['model']}, {results['code']}",
               fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _iou(results, which) -> str:
  return (f"{results[f'{which}_mean_iou']:.3f} "
          f"({_pct(results[f'{which}_{_AT}'])} with IoU >= "
          f"{localization.IOU_THRESHOLD})")


def _pct(value) -> str:
  return f"{100 * value:.2f}%"


def _in_top5(scores, labels):
  top = np.argsort(-scores, axis=-1)[..., :5]
  return (top == labels[..., None]).any(-1)


def _chunks(array, size):
  """Yields fixed-size chunks (the last one padded) and their real lengths."""
  for start in range(0, len(array), size):
    chunk = array[start:start + size]
    n = len(chunk)
    if n < size:
      pad = np.repeat(chunk[-1:], size - n, axis=0)
      chunk = np.concatenate([chunk, pad])
    yield chunk, n


@functools.lru_cache(maxsize=None)
def _predict_fn(model, mean, std):
  mean, std = np.float32(mean), np.float32(std)

  @jax.jit
  def fn(model_variables, images):
    return model.apply(model_variables, data.normalize(images, mean, std))
  return fn


@functools.lru_cache(maxsize=None)
def _parity_fn(code, model, approach, mean, std):
  mean, std = np.float32(mean), np.float32(std)

  @jax.jit
  def fn(code_params, parity_vars, images_BK):
    parities_BR = code.encode(code_params, data.normalize(images_BK, mean,
                                                          std))
    if approach == "parity-model":
      return stacked_apply(model, parity_vars, parities_BR)
    return base_apply_groups(model, parity_vars, parities_BR)
  return fn


def stacked_apply(model, stacked_vars, parities_BR):
  """Parity model j (leading axis of `stacked_vars`) on parity j: `(B,R,C)`."""
  out_RBC = jax.vmap(model.apply, in_axes=(0, 1))(stacked_vars, parities_BR)
  return jnp.moveaxis(out_RBC, 0, 1)


def base_apply_groups(model, base_vars, x_BG):
  """F on every member of a group axis: `(B, G, ...) -> (B, G, C)`."""
  b, g = x_BG.shape[:2]
  out = model.apply(base_vars, x_BG.reshape((b * g,) + x_BG.shape[2:]))
  return out.reshape(b, g, -1)
