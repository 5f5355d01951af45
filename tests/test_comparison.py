"""Comparing codes on one base model and the same test groups."""

import json

import pytest

from configs import learned as learned_config
from configs import parity as parity_config
from jaxcc import comparison
from jaxcc import evaluation
from jaxcc import stages
from jaxcc import workdir

_TINY = ("base_epochs=1,epochs=1,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("compare")
  parity = root / "parity"
  stages.train(parity_config.get_config(_TINY), str(parity))
  learned = root / "learned"
  stages.train(learned_config.get_config(f"{_TINY},base_workdir={parity}"),
               str(learned))
  return parity, learned


@pytest.mark.slow
def test_rows_equal_each_runs_own_evaluation(runs, tmp_path):
  parity, learned = runs
  rows, floor = comparison.compare([str(parity), str(learned)],
                                   berrut=[(2, 1, 1)])
  assert [r["approach"] for r in rows] == ["parity-model", "learned", "none"]
  for row, run in zip(rows, runs):
    own = evaluation.evaluate(workdir.saved_config(str(run)), str(run))
    assert row["degraded_accuracy"] == own["degraded_accuracy"]
    assert row["available_accuracy"] == own["available_accuracy"]
  assert rows[1]["encoder"] == "mlp" and rows[2]["workdir"] is None
  assert floor["degraded_accuracy"] == pytest.approx(0.1)
  comparison.write(rows, floor, str(tmp_path))
  saved = json.load(open(tmp_path / "compare.json"))
  assert len(saved["rows"]) == 3
  assert (tmp_path / "compare.md").read_text().count("\n") == 2 + 3 + 1
  assert (tmp_path / "compare_all_slots.png").exists()


@pytest.mark.slow
def test_runs_on_different_base_models_are_refused(runs, tmp_path):
  other = tmp_path / "other"
  stages.train(parity_config.get_config(_TINY + ",seed=1"), str(other))
  with pytest.raises(ValueError, match="different base models"):
    comparison.compare([str(runs[0]), str(other)])


@pytest.mark.slow
def test_training_free_rows_on_a_base_workdir_alone(runs):
  parity, _ = runs
  rows, _ = comparison.compare(
      [], training_free=[("berrut", 2, 1, 1), ("approxifer", 3, 2, 2),
                         ("spline", 3, 2, 1)], base_workdir=str(parity))
  assert [r["family"] for r in rows] == [
      "Berrut, systematic", "Berrut, ApproxIFER",
      "spline, lambdas on validation"]
  assert rows[1]["code"] == "berrut(k=3, r=2, systematic=False)"
  assert rows[2]["code"] == rows[2]["spline_search"]["code"]
  assert rows[2]["code"].startswith("spline(k=3, r=2, lambda_encoder=")
  # A systematic code passes arrived outputs through; a non-systematic one
  # decodes all k, so both conventions coincide.
  assert rows[0]["degraded_accuracy_all_slots"] > rows[0]["degraded_accuracy"]
  assert rows[0]["available_accuracy"] == rows[0]["base_accuracy"]
  for row in rows[1:]:
    assert row["degraded_accuracy_all_slots"] == row["degraded_accuracy"]
    assert row["available_accuracy"] != row["base_accuracy"]


def test_berrut_rows_need_a_base_model():
  with pytest.raises(ValueError, match="need a base model"):
    comparison.compare([], berrut=[(2, 1, 1)])


def test_unknown_training_free_codes_are_refused():
  with pytest.raises(ValueError, match="unknown training-free code 'lt'"):
    comparison.compare([], training_free=[("lt", 2, 1, 1)])


def test_markdown_table_lists_every_row_and_the_floor():
  rows = [{"code": "summation(k=2)", "approach": "parity-model", "k": 2,
           "r": 1, "missing": 1, "available_accuracy": 0.9,
           "degraded_accuracy": 0.8, "degraded_accuracy_all_slots": 0.875,
           "reconstruction_accuracy": 0.85}]
  table = comparison.to_markdown(rows, {"degraded_accuracy": 0.1})
  assert "| summation(k=2) | parity-model | 2 | 1 | 1 | 90.00 | 80.00 | " \
      "87.50 | 85.00 |" in table
  assert "| default prediction | none | any | 0 | any | | 10.00 | | |" in table


def test_families_name_each_line_of_the_plot():
  config = parity_config.get_config("code=berrut,berrut.systematic=false")
  assert comparison.family(config) == "Berrut, ApproxIFER"
  assert comparison.family(parity_config.get_config(
      "code=spline,spline.search=false")) == "spline"
  assert comparison.family(parity_config.get_config(
      "code=linear")) == "linear parity models"
  assert comparison.family(parity_config.get_config(
      "code=learned,encoder=conv")) == "learned [conv]"


def test_plot_takes_rows_with_several_missing_counts(tmp_path):
  rows = [{"family": f, "k": k, "missing": m, "degraded_accuracy": 0.5,
           "degraded_accuracy_all_slots": 0.7}
          for f in ("a", "b") for k in (8, 10) for m in (1, 2)]
  comparison.plot(rows, None, str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").stat().st_size > 0


def _row(family, k, accuracy, base=0.98):
  return {"family": family, "k": k, "r": 1, "missing": 1,
          "base_accuracy": base, "degraded_accuracy": accuracy}


def test_merge_adds_new_rows_and_replaces_rows_of_the_same_code():
  old = [_row("spline", 8, 0.8), _row("learned [mlp]", 8, 0.2)]
  new = [_row("learned [mlp]", 8, 0.3), _row("learned [mlp]", 10, 0.25)]
  merged = comparison.merge(old, new)
  assert [(r["family"], r["k"], r["degraded_accuracy"]) for r in merged] == [
      ("spline", 8, 0.8), ("learned [mlp]", 8, 0.3),
      ("learned [mlp]", 10, 0.25)]
  assert comparison.merge(merged, new) == merged


def test_merge_refuses_rows_of_another_base_model():
  with pytest.raises(ValueError, match="different base models"):
    comparison.merge([_row("spline", 8, 0.8)],
                     [_row("learned [mlp]", 8, 0.3, base=0.9)])


def test_read_returns_what_write_wrote(tmp_path):
  rows = [dict(_row("a", k, 0.5), degraded_accuracy_all_slots=0.7,
               code="a", approach="none", available_accuracy=0.9,
               reconstruction_accuracy=0.6) for k in (8, 10)]
  floor = {"code": "default prediction", "degraded_accuracy": 0.1}
  comparison.write(rows, floor, str(tmp_path))
  assert comparison.read(str(tmp_path)) == (rows, floor)


def test_plot_keeps_each_familys_colour_in_every_panel(tmp_path, monkeypatch):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = [{"family": f, "k": k, "missing": m, "degraded_accuracy": 0.5,
           "degraded_accuracy_all_slots": 0.7}
          for f in ("a", "b", "c") for k in (8, 10) for m in (1, 2)
          if not (f == "a" and m == 2)]
  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  comparison.plot(rows, {"degraded_accuracy": 0.1}, str(tmp_path / "p.png"))
  colors = {}
  for ax in figures[0].axes:
    for line in ax.get_lines():
      colors.setdefault(line.get_label(), set()).add(line.get_color())
  assert all(len(c) == 1 for c in colors.values())
  legend = figures[0].axes[-1].get_legend()
  assert [t.get_text() for t in legend.get_texts()] == [
      "a", "b", "c", "default prediction"]
