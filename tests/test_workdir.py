"""A workdir is bound to the config that trained it."""

import json
import shutil

import pytest

from configs import parity as parity_config
from jaxcc import evaluation
from jaxcc import stages
from jaxcc import workdir

_TINY = ("base_epochs=1,epochs=1,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


def _config(extra=""):
  return parity_config.get_config(_TINY + ("," + extra if extra else ""))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  path = tmp_path_factory.mktemp("bound")
  stages.train(_config(), str(path))
  return path


@pytest.mark.slow
@pytest.mark.parametrize("extra, field", [
    ("k=3", "k"), ("code=linear", "code"), ("target=label", "parity.target"),
    ("base_epochs=2", "base_epochs"), ("data_seed=1", "data_seed"),
    ("model=lenet5", "model"), ("validation_size=300", "validation_size"),
])
def test_resume_under_another_config_is_refused(trained, extra, field):
  before = (trained / "config.json").read_text()
  with pytest.raises(ValueError, match=f"trained with {field}="):
    stages.train(_config(extra), str(trained))
  assert (trained / "config.json").read_text() == before


@pytest.mark.slow
def test_evaluation_uses_the_saved_config_and_refuses_another(trained):
  saved = workdir.saved_config(str(trained))
  assert saved.k == 2 and json.load(open(trained / "config.json"))["k"] == 2
  results = evaluation.evaluate(saved, str(trained))
  assert results["k"] == 2
  saved.data_seed = 1
  with pytest.raises(ValueError, match="trained with data_seed=0"):
    evaluation.evaluate(saved, str(trained))


@pytest.mark.slow
def test_a_workdir_saved_before_later_fields_still_restores(trained, tmp_path):
  old = tmp_path / "old"
  shutil.copytree(trained, old)
  saved = json.load(open(old / "config.json"))
  for name in ("base_checkpoint", "input_pipeline", "max_device_bytes",
               "checkpoint_every_steps"):
    del saved[name]
  for name in ("loss", "temperature", "width", "schedule", "warmup_epochs"):
    del saved["parity"][name]
  json.dump(saved, open(old / "config.json", "w"))
  restored = workdir.restore(str(old))
  assert restored.experiment.config.base_checkpoint == ""
  assert evaluation.evaluate(workdir.saved_config(str(old)), str(old)) == (
      evaluation.evaluate(workdir.saved_config(str(trained)), str(trained)))


@pytest.mark.slow
def test_reused_base_must_match_data_and_model(trained, tmp_path):
  reuse = f"base_workdir={trained}"
  with pytest.raises(ValueError, match="base was trained with model="):
    stages.train(_config(f"{reuse},model=lenet5"), str(tmp_path / "a"))
  # Another initialisation seed is fine: the split depends on data_seed.
  stages.train(_config(f"{reuse},seed=1"), str(tmp_path / "b"))
  results = evaluation.evaluate(workdir.saved_config(str(tmp_path / "b")),
                                str(tmp_path / "b"))
  assert results["available_accuracy"] == evaluation.evaluate(
      workdir.saved_config(str(trained)), str(trained))["available_accuracy"]


def test_check_identity_names_the_first_differing_field(tmp_path):
  workdir.bind(str(tmp_path), {"k": 2, "code": "summation"})
  workdir.check_identity(str(tmp_path), {"k": 2, "code": "summation"})
  with pytest.raises(ValueError, match="trained with code='summation', but "
                     "this run has code='linear'"):
    workdir.check_identity(str(tmp_path), {"k": 2, "code": "linear"})
  workdir.check_identity(str(tmp_path / "new"), {"k": 5})  # nothing trained


def test_damaged_identity_is_a_clear_error(tmp_path):
  (tmp_path / workdir.IDENTITY_FILE).write_text("{truncated")
  with pytest.raises(ValueError, match="identity.json is damaged"):
    workdir.check_identity(str(tmp_path), {"k": 2})


def test_a_second_training_process_in_a_workdir_is_refused(tmp_path):
  with workdir.training_lock(str(tmp_path)):
    with pytest.raises(ValueError, match="another process is training"):
      stages.train(_config(), str(tmp_path))
  assert not (tmp_path / "config.json").exists()
  with workdir.training_lock(str(tmp_path)):  # released by the first holder
    pass
