"""Tasks: how F is trained and how its (reconstructed) outputs are scored.

A `Task` is chosen once from the dataset. Classification scores the top-1
and top-5 accuracy of class scores; localisation (a regression of 4 box
coordinates, paper §V-E) scores boxes cut to the image by their IoU with the
true box (mean, and the fraction at IoU >= 0.75). Evaluation computes every
metric of `Task.metrics` for F's outputs ("available"), reconstructions
("degraded") and the default prediction; the first metric is the primary
one (validation, overall A_o(f), agreement with F's own outputs).
"""

from typing import Callable, NamedTuple

import numpy as np
import optax

from jaxcc import data
from jaxcc import localization
from jaxcc import losses

_IOU_AT = f"iou_at_{localization.IOU_THRESHOLD}"
# eval.json fields of classification, null in a localisation task's results.
_ACCURACY_FIELDS = ("available_accuracy", "degraded_accuracy",
                    "degraded_accuracy_all_slots", "reconstruction_accuracy",
                    "default_accuracy", "overall_accuracy",
                    "available_top5_accuracy", "degraded_top5_accuracy",
                    "default_top5_accuracy")


class Task(NamedTuple):
  """Training loss and scoring of one task, as functions.

  Attributes:
    name: "classification" or "localization" (eval.json's `task`).
    metrics: names of the per-example scores, the primary one first.
    score: `(outputs_MC, labels_M) -> {metric: scores_M}`.
    agreement: `(outputs_MC, base_outputs_MC) -> scores_M`, how well
      reconstructions agree with F's own outputs (same scale as the primary
      metric).
    default: `{metric: value}` of the default prediction on the test labels.
    base_loss: `(outputs_BC, labels_B) -> scalar`, F's training loss.
    label_targets: `labels_N -> targets_NC`, the outputs a perfect F would
      give (one-hot classes, or the boxes), for parity targets from labels.
    null_fields: eval.json fields that this task leaves null.
    format_rows: `results -> [(name, value)]` for the printed table.
  """
  name: str
  metrics: tuple
  score: Callable
  agreement: Callable
  default: Callable
  base_loss: Callable
  label_targets: Callable
  null_fields: tuple
  format_rows: Callable

  @property
  def primary(self) -> str:
    return self.metrics[0]


def for_dataset(dataset: data.Dataset) -> Task:
  """The task of `dataset`."""
  if dataset.task == data.LOCALIZATION:
    return localization_task(dataset.train.label.mean(0))
  return classification(dataset.num_classes)


def classification(num_classes: int) -> Task:
  """Class scores; the default prediction is right 1/C of the time."""

  def score(outputs_MC, labels_M):
    return {"accuracy": outputs_MC.argmax(-1) == labels_M,
            "top5_accuracy": _in_top5(outputs_MC, labels_M)}

  def format_rows(results):
    return [
        ("available accuracy A_a", _pct(results["available_accuracy"])),
        ("degraded accuracy A_d", _pct(results["degraded_accuracy"])),
        ("reconstruction accuracy", _pct(results["reconstruction_accuracy"])),
        ("default prediction", _pct(results["default_accuracy"])),
        ("A_a top-5 / A_d top-5",
         f"{_pct(results['available_top5_accuracy'])}"
         f" / {_pct(results['degraded_top5_accuracy'])}"),
    ] + [(f"overall A_o(f={f})", _pct(v))
         for f, v in results["overall_accuracy"].items()]

  return Task(
      name=data.CLASSIFICATION,
      metrics=("accuracy", "top5_accuracy"),
      score=score,
      agreement=lambda out_MC, base_MC: out_MC.argmax(-1) == base_MC.argmax(
          -1),
      default=lambda labels_N: {
          "accuracy": 1.0 / num_classes,
          "top5_accuracy": min(5, num_classes) / num_classes},
      base_loss=lambda logits, labels: (
          optax.softmax_cross_entropy_with_integer_labels(logits,
                                                          labels).mean()),
      label_targets=lambda labels_N: np.eye(
          num_classes, dtype=np.float32)[labels_N],
      null_fields=(),
      format_rows=format_rows)


def localization_task(default_box) -> Task:
  """Boxes scored by IoU; the default prediction is `default_box` (the mean
  training box) whatever the input."""

  def score(boxes_M4, true_M4):
    iou_M = localization.iou(localization.clip_to_image(boxes_M4), true_M4)
    return {"mean_iou": iou_M, _IOU_AT: iou_M >= localization.IOU_THRESHOLD}

  def format_rows(results):
    return [
        ("available mean IoU", _iou(results, "available")),
        ("degraded mean IoU", _iou(results, "degraded")),
        ("reconstruction mean IoU (vs F)",
         f"{results['reconstruction_mean_iou']:.3f}"),
        ("default (mean train box)", f"{results['default_mean_iou']:.3f}"),
    ] + [(f"overall mean IoU (f={f})", f"{v:.3f}")
         for f, v in results["overall_mean_iou"].items()]

  return Task(
      name=data.LOCALIZATION,
      metrics=("mean_iou", _IOU_AT),
      score=score,
      agreement=lambda out_M4, base_M4: localization.iou(
          localization.clip_to_image(out_M4),
          localization.clip_to_image(base_M4)),
      default=lambda true_N4: {m: float(np.mean(v)) for m, v in score(
          np.broadcast_to(default_box, true_N4.shape), true_N4).items()},
      base_loss=losses.mse,
      label_targets=lambda boxes_N4: boxes_N4,
      null_fields=_ACCURACY_FIELDS,
      format_rows=format_rows)


def _in_top5(scores, labels):
  top = np.argsort(-scores, axis=-1)[..., :5]
  return (top == labels[..., None]).any(-1)


def _iou(results, which) -> str:
  return (f"{results[f'{which}_mean_iou']:.3f} "
          f"({_pct(results[f'{which}_{_IOU_AT}'])} with IoU >= "
          f"{localization.IOU_THRESHOLD})")


def _pct(value) -> str:
  return f"{100 * value:.2f}%"
