"""examples/protect_custom_cnn.py end to end on `tfds.testing.mock_data`."""

import importlib.util
import os

import pytest
import tensorflow_datasets as tfds

_EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples",
                        "protect_custom_cnn.py")


def _example():
  spec = importlib.util.spec_from_file_location("protect_custom_cnn",
                                                _EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_protect_custom_cnn_trains_evaluates_and_serves():
  example = _example()
  with tfds.testing.mock_data(num_examples=32):
    results = example.run(train_size=32, test_size=32, serve_size=8,
                          base_epochs=1, parity_epochs=1, batch_size=8)
  assert results["k"] == 2 and results["code"] == "summation(k=2)"
  assert results["approach"] == "parity-model"
  assert results["num_groups"] == 16
  for name in ("available_accuracy", "degraded_accuracy",
               "reconstruction_accuracy"):
    assert 0.0 <= results[name] <= 1.0
  assert results["finite_parity_outputs"]
  sources = results["served"]["sources"]
  assert sum(sources.values()) == 8
  # One of the two F instances is slow: some answers are reconstructions.
  assert sources["reconstruction"] >= 1
