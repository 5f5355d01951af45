"""From a config to an experiment: codes, approaches, tasks and checks."""

import pytest

from configs import learned as learned_config
from configs import localization as localization_config
from configs import parity as parity_config
from jaxcc import experiment


@pytest.mark.parametrize("name, r, expected", [
    ("summation", 1, "summation(k=3)"), ("linear", 2, "linear"),
    ("concatenation", 1, "concatenation(k=3)"), ("berrut", 2, "berrut"),
    ("learned", 1, "learned"), ("spline", 2, "spline"),
])
def test_make_code_builds_every_code(name, r, expected):
  code = experiment.make_code(name, 3, r)
  assert (code.k, code.r) == (3, r) and code.name.startswith(expected)


@pytest.mark.parametrize("extra, name, systematic", [
    ("code=berrut", "berrut(k=8, r=2)", True),
    ("code=berrut,berrut.systematic=false",
     "berrut(k=8, r=2, systematic=False)", False),
    ("code=spline", "spline(k=8, r=2, lambdas chosen on validation)", False),
    ("code=spline,spline.search=false,spline.lambda_encoder=0.01",
     "spline(k=8, r=2, lambda_encoder=0.01, lambda_decoder=0.0001)", False),
])
def test_choose_builds_training_free_codes_from_their_fields(extra, name,
                                                             systematic):
  code, approach = experiment.choose(
      parity_config.get_config(f"k=8,r=2,{extra}"))
  assert code.name == name and code.systematic == systematic
  assert approach.name == "none" and not approach.trains


def test_configs_saved_before_the_code_fields_get_the_defaults():
  config = parity_config.get_config("code=berrut")
  del config["berrut"], config["spline"]
  code, _ = experiment.choose(config)
  assert code.name == "berrut(k=2, r=1)" and code.systematic


@pytest.mark.parametrize("name, r, message", [
    ("summation", 2, "summation code has r = 1"),
    ("concatenation", 2, "concatenation code has r = 1"),
    ("fountain", 1, "unknown code"),
])
def test_make_code_refuses_what_cannot_work(name, r, message):
  with pytest.raises(ValueError, match=message):
    experiment.make_code(name, 2, r)


@pytest.mark.parametrize("config, approach, trains, fields", [
    (parity_config.get_config(""), "parity-model", True,
     ("parity.target", "parity.init", "parity.loss", "parity.temperature",
      "parity.width", "parity.schedule", "parity.warmup_epochs")),
    (learned_config.get_config(""), "learned", True,
     ("learned.encoder", "learned.decoder_width", "learned.loss",
      "learned.patterns", "parity.schedule", "parity.warmup_epochs")),
    (parity_config.get_config("code=berrut"), "none", False, ()),
])
def test_setup_chooses_the_approach_once(tmp_path, config, approach, trains,
                                         fields):
  config.validation_size = 200
  exp = experiment.setup(config, str(tmp_path))
  assert exp.approach.name == approach and exp.approach.trains == trains
  assert exp.approach.config_fields == fields
  assert exp.task.name == "classification" and exp.task.primary == "accuracy"
  assert exp.base_dir == str(tmp_path / "base")


def test_setup_chooses_the_localization_task(tmp_path):
  exp = experiment.setup(localization_config.get_config(
      "dataset=digits-localization,image_size=0"), str(tmp_path))
  assert exp.task.name == "localization" and exp.task.primary == "mean_iou"
  assert exp.model.num_outputs == 4


@pytest.mark.parametrize("extra, message", [
    ("eval_every=0", "eval_every must be"),
    ("parity.learning_rate=0.0", "parity.learning_rate must be > 0"),
    ("base.weight_decay=-1.0", "base.weight_decay must be >= 0"),
    ("checkpoint_every_secs=-1.0", "checkpoint_every_secs must be >= 0"),
    ("loss=hinge,code=learned", "unknown loss"),
])
def test_choose_refuses_bad_fields(extra, message):
  with pytest.raises(ValueError, match=message):
    experiment.choose(parity_config.get_config(extra))


def test_field_reads_dotted_names():
  config = parity_config.get_config("epochs=7")
  assert experiment.field(config, "parity.epochs") == 7
  assert experiment.field(config, "k") == 2
