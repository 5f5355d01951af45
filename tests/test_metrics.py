"""The metric path of `jaxcc.metrics`, against hand-computed values."""

import types

import ml_collections
import numpy as np
import pytest

from jaxcc import approaches
from jaxcc import codes
from jaxcc import data
from jaxcc import experiment
from jaxcc import metrics
from jaxcc import models
from jaxcc import tasks
from jaxcc.codes import _spline

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


# Non-systematic codes: k = 2, r = 1, N = 3 workers, C = 3 classes.
_STRAGGLERS = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], bool)


def test_non_systematic_scores_all_k_decoded_outputs_under_every_pattern():
  outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]  # F: 0, 1, 2, 0
  labels = np.array([0, 1, 1, 0])  # F right on 0, 1, 3
  one = np.eye(3, dtype=np.float32)
  # Decoded groups (classes) per pattern; even the third pattern, which
  # loses worker 2 (no data slot), is decoded in full.
  recon = np.stack([one[[[0, 1], [2, 0]]],   # labels [0 1] [1 0]: 3 right
                    one[[[0, 0], [1, 0]]],   # 3 right
                    one[[[2, 2], [2, 2]]]])  # 0 right
  decoded = one[[[0, 1], [1, 1]]]  # no straggler: 3 right
  m = metrics.coded_metrics(tasks.classification(3), outputs, labels,
                            _GROUPS, np.zeros((2, 3, 3)), recon, _STRAGGLERS,
                            systematic=False, decoded_GKC=decoded)
  assert m["base_accuracy"] == 0.75  # F's own outputs
  assert m["available_accuracy"] == 0.75  # the decoder with no straggler
  assert m["degraded_accuracy"] == 6 / 12
  assert m["degraded_accuracy_all_slots"] == 6 / 12
  assert [p["degraded_accuracy"] for p in m["per_pattern"]] == [.75, .75, 0]
  assert [p["missing"] for p in m["per_pattern"]] == [[0], [1], [2]]
  # Against F's 0, 1 | 2, 0: [y y | y y], [y n | n y], [n n | y n].
  assert [p["reconstruction_accuracy"] for p in m["per_pattern"]] == [
      1, .5, .25]
  assert m["overall_accuracy"]["0.5"] == pytest.approx(0.625)


def test_non_systematic_available_accuracy_is_the_decoder_s():
  outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
  labels = np.array([0, 1, 1, 0])
  decoded = np.eye(3, dtype=np.float32)[[[2, 2], [2, 2]]]  # all wrong
  m = metrics.coded_metrics(tasks.classification(3), outputs, labels,
                            _GROUPS, np.zeros((2, 3, 3)),
                            np.stack([decoded] * 3), _STRAGGLERS,
                            systematic=False, decoded_GKC=decoded)
  assert m["base_accuracy"] == 0.75 and m["available_accuracy"] == 0.0
  assert m["overall_accuracy"]["0.0"] == 0.0
  with pytest.raises(ValueError, match="decoded_GKC"):
    metrics.coded_metrics(tasks.classification(3), outputs, labels, _GROUPS,
                          np.zeros((2, 3, 3)), np.stack([decoded] * 3),
                          _STRAGGLERS, systematic=False)


def _linear_apply(variables, x_B):
  return x_B.reshape(x_B.shape[0], -1) @ variables["params"]["w"]


def _linear_experiment(code, config, test_size=12, seed=0):
  """A linear F (4 inputs, 3 classes) on random data; identity scaling."""
  rng = np.random.default_rng(seed)

  def split(n):
    return data.Split(rng.normal(size=(n, 2, 2, 1)).astype(np.float32),
                      rng.integers(0, 3, n))

  dataset = data.Dataset("fake", split(12), split(30), split(test_size), 3,
                         np.zeros(1, np.float32), np.ones(1, np.float32))
  model = models.Model("linear", None, _linear_apply, 3)
  exp = experiment.Experiment(
      config=ml_collections.ConfigDict(config), dataset=dataset,
      task=tasks.classification(3), model=model, code=code,
      approach=approaches.training_free(), base_dir="", stage2_dir="")
  w = rng.normal(size=(4, 3)).astype(np.float32)
  return exp, types.SimpleNamespace(params={"w": w}, batch_stats={})


def _berrut64(targets, nodes):
  """Berrut's interpolation weights, float64, written out independently."""
  signs = np.empty(len(nodes))
  signs[np.argsort(nodes)] = (-1.0)**np.arange(len(nodes))
  w = signs / (targets[:, None] - nodes[None, :])
  return w / w.sum(axis=1, keepdims=True)


def test_approxifer_evaluation_matches_a_float64_numpy_pipeline():
  k, r = 3, 2
  exp, state = _linear_experiment(codes.berrut(k, r, systematic=False),
                                  {"code": "berrut"})
  test = exp.dataset.test
  x = test.image.reshape(len(test.label), -1).astype(np.float64)
  # Labels where F is right on 10 of 12, so that A_a, F's accuracy and
  # the decoder's no-straggler accuracy differ.
  labels = (x @ state.params["w"]).argmax(-1)
  labels[:2] = (labels[:2] + 1) % 3
  test = data.Split(test.image, labels)
  exp = exp._replace(dataset=exp.dataset._replace(test=test))
  m = metrics.evaluate_split(exp, state, None, test, seed=0, missing=1)
  alpha = np.cos((2 * np.arange(k) + 1) * np.pi / (2 * k))
  z = np.cos(np.arange(k + r) * np.pi / (k + r))
  groups = data.test_groups(len(test.label), k, 0)
  y_GNC = np.einsum("nk,gkc->gnc", _berrut64(z, alpha),
                    x[groups] @ state.params["w"])  # F linear: F(sum) = sum F
  def accuracy(arrived):
    recon = np.einsum("kn,gnc->gkc", _berrut64(alpha, z[arrived]),
                      y_GNC[:, arrived])
    return recon.argmax(-1) == test.label[groups]
  lost_one = [accuracy(np.arange(k + r) != m) for m in range(k + r)]
  expected_available = accuracy(np.arange(k + r)).mean()
  expected_base = (x @ state.params["w"]).argmax(-1) == test.label
  assert expected_base.mean() == 10 / 12
  assert expected_available != expected_base.mean()  # the test can tell
  assert m["available_accuracy"] == pytest.approx(expected_available)
  assert m["base_accuracy"] == pytest.approx(expected_base.mean())
  assert m["degraded_accuracy"] == pytest.approx(np.mean(lost_one))
  assert m["degraded_accuracy_all_slots"] == m["degraded_accuracy"]
  assert [p["missing"] for p in m["per_pattern"]] == [[i] for i in range(5)]
  assert [p["degraded_accuracy"] for p in m["per_pattern"]] == pytest.approx(
      [a.mean() for a in lost_one])


def test_spline_lambdas_are_chosen_on_validation_never_on_test():
  k, r = 3, 1
  config = {"code": "spline", "spline": {"search": True}}
  # Two test examples cannot form a group of 3: reading them would raise.
  exp, state = _linear_experiment(codes.spline(k, r), config, test_size=2)
  base_vars = {"params": state.params}
  chosen, summary = metrics.choose_spline_lambdas(exp, base_vars, seed=0)
  assert chosen.name == summary["code"]
  assert (summary["lambda_encoder"], summary["lambda_decoder"]) in {
      (a, b) for a in _spline.LAMBDA_GRID for b in _spline.LAMBDA_GRID}
  # The search's score equals the chosen code's own decoding: its
  # reconstruction agreement on the validation split, same groups.
  fixed = {"code": "spline", "spline": {"search": False}}
  own = metrics.evaluate_split(
      exp._replace(code=chosen, config=ml_collections.ConfigDict(fixed)),
      state, None, exp.dataset.validation, seed=0)
  assert summary["validation_reconstruction_accuracy"] == pytest.approx(
      own["reconstruction_accuracy"])
  assert summary["validation_groups"] == 10


def test_evaluation_decodes_with_the_searched_spline_code(monkeypatch):
  config = {"code": "spline", "spline": {"search": True}}
  exp, state = _linear_experiment(codes.spline(3, 1), config, test_size=60)
  smooth = codes.spline(3, 1, 1.0, 1.0)  # far from the default lambdas
  monkeypatch.setattr(metrics, "choose_spline_lambdas",
                      lambda *args, **kwargs: (smooth, {"code": "chosen"}))
  m = metrics.evaluate_split(exp, state, None, exp.dataset.test, seed=0)
  fixed = ml_collections.ConfigDict({"code": "spline",
                                     "spline": {"search": False}})

  def plain(code):
    return metrics.evaluate_split(exp._replace(code=code, config=fixed),
                                  state, None, exp.dataset.test, seed=0)

  assert m["spline_search"] == {"code": "chosen"}
  assert m["per_pattern"] == plain(smooth)["per_pattern"]
  assert m["per_pattern"] != plain(exp.code)["per_pattern"]
  assert len(m["per_pattern"]) == 4  # any one of the N = 4 workers
