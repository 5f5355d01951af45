"""The metric path of `jaxcc.metrics`, against hand-computed values."""

import numpy as np
import pytest

from jaxcc import metrics
from jaxcc import tasks

# Four test examples in two groups of k = 2, r = 1, C = 3 classes.
_GROUPS = np.array([[0, 1], [2, 3]])
_PATTERNS = np.array([[0, 1, 1], [1, 0, 1]], bool)  # slot 0, then 1 missing


def _classification(outputs, labels, recon):
  return metrics.coded_metrics(tasks.classification(3), outputs, labels,
                               _GROUPS, np.zeros((2, 1, 3)), recon, _PATTERNS)


def test_reconstructions_are_scored_in_the_erased_slot_only():
  outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]  # F: 0, 1, 2, 0
  labels = np.array([0, 1, 1, 0])  # F right on 0, 1, 3
  # Decoded groups: arrived slots pass F's outputs through; the erased
  # slot holds a reconstruction different from F's output.
  recon = np.stack([outputs[_GROUPS]] * 2)
  recon[0, 0, 0] = np.eye(3)[2]  # pattern 0, group 0, slot 0: 2 (label 0)
  recon[0, 1, 0] = np.eye(3)[1]  # pattern 0, group 1, slot 0: 1 (label 1)
  recon[1, 0, 1] = np.eye(3)[1]  # pattern 1, group 0, slot 1: 1 (label 1)
  recon[1, 1, 1] = np.eye(3)[2]  # pattern 1, group 1, slot 1: 2 (label 0)
  m = _classification(outputs, labels, recon)
  assert m["available_accuracy"] == 0.75
  # Erased slots: [wrong, right] then [right, wrong].
  assert m["degraded_accuracy"] == 0.5
  assert [p["degraded_accuracy"] for p in m["per_pattern"]] == [0.5, 0.5]
  # Against F's own predictions 0, 2 | 1, 0: [no, no] then [yes, no].
  assert m["reconstruction_accuracy"] == 0.25
  assert [p["reconstruction_accuracy"] for p in m["per_pattern"]] == [0, 0.5]
  assert [p["missing"] for p in m["per_pattern"]] == [[0], [1]]
  # All slots of each decoded group: 8 slots, 2 + ... see below.
  #   pattern 0: [2|0 wrong, 1|1 right], [1|1 right, 0|0 right] -> 3 of 4
  #   pattern 1: [0|0 right, 1|1 right], [2|1 wrong, 2|0 wrong] -> 2 of 4
  assert m["degraded_accuracy_all_slots"] == 5 / 8
  assert m["overall_accuracy"]["0.5"] == pytest.approx(0.625)
  assert m["default_accuracy"] == 1 / 3
  assert m["default_top5_accuracy"] == 1.0


def test_top5_counts_the_label_among_the_five_best_scores():
  outputs = np.tile(np.arange(7, dtype=np.float32), (4, 1))  # best: 6..2
  labels = np.array([6, 2, 1, 0])
  groups = np.array([[0, 1], [2, 3]])
  m = metrics.coded_metrics(tasks.classification(7), outputs, labels, groups,
                            np.zeros((2, 1, 7)),
                            np.stack([outputs[groups]] * 2), _PATTERNS)
  assert m["available_top5_accuracy"] == 0.5
  assert m["degraded_top5_accuracy"] == 0.5
  assert m["default_top5_accuracy"] == 5 / 7


def test_boxes_are_scored_by_iou_in_the_erased_slot():
  true = np.array([[0, 0, .5, .5], [0, 0, 1, 1], [.5, .5, 1, 1],
                   [0, 0, .5, 1]], np.float32)
  outputs = true.copy()  # F is perfect
  recon = np.stack([outputs[_GROUPS]] * 2)
  recon[0, :, 0] = [[0, 0, .5, .25], [.5, .5, 1, 1.5]]  # IoU 0.5, 1 (clipped)
  recon[1, :, 1] = [[0, 0, 1, 1], [0, 0, 1, 1]]  # IoU 1, 0.5
  task = tasks.localization_task(np.array([0, 0, 1, 1], np.float32))
  m = metrics.coded_metrics(task, outputs, true, _GROUPS,
                            np.zeros((2, 1, 4)), recon, _PATTERNS)
  assert m["available_mean_iou"] == 1.0
  assert m["degraded_mean_iou"] == pytest.approx(3 / 4)
  assert m["degraded_iou_at_0.75"] == 0.5
  assert m["reconstruction_mean_iou"] == pytest.approx(3 / 4)
  assert [p["degraded_mean_iou"] for p in m["per_pattern"]] == [
      pytest.approx(.75), pytest.approx(.75)]
  # The default (whole image) box against the true boxes.
  assert m["default_mean_iou"] == pytest.approx((.25 + 1 + .25 + .5) / 4)
  assert m["degraded_accuracy"] is None and m["available_accuracy"] is None


def test_non_finite_parity_outputs_are_flagged():
  outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
  m = metrics.coded_metrics(tasks.classification(3), outputs,
                            np.array([0, 1, 2, 0]), _GROUPS,
                            np.full((2, 1, 3), np.nan),
                            np.stack([outputs[_GROUPS]] * 2), _PATTERNS)
  assert m["finite_parity_outputs"] is False
