"""The benchmark suite end to end at tiny sizes, its loops and accounting."""

import json
import math
import time

import jax.numpy as jnp
import pytest

from configs import benchmark as benchmark_config
from jaxcc import benchmark
from jaxcc import timing

# 16x16 images: the smallest LeNet-5 takes; 256 pixels an image.
_TINY = ("models=mlp,ks=2,steps=2,repeats=1,batch=4,inference_batch=8,"
         "code_batch=8,peak_size=128,bandwidth_mib=1,min_seconds=0,"
         "image_shape=16+16+1,codes=summation,learned-mlp")
_PIXELS = 16 * 16


def _config(extra=""):
  return benchmark_config.get_config(_TINY + ("," + extra if extra else ""))


@pytest.fixture(scope="module")
def results():
  return benchmark.run(_config("rows=inference+parity+learned+codes"))


def test_config_lists_take_commas():
  config = benchmark_config.get_config("models=mlp,lenet5,ks=2,4,batch=8")
  assert (config.models, config.ks, config.batch) == ("mlp+lenet5", "2+4", 8)
  assert config.epoch_loop == "auto" and "epoch_loop" not in config.train


def test_suite_writes_json_and_markdown(results, tmp_path):
  table = benchmark.write(results, str(tmp_path), "tiny")
  with open(tmp_path / "tiny.json") as f:
    loaded = json.load(f)
  assert (tmp_path / "tiny.md").read_text() == table
  kinds = [row["kind"] for row in loaded["rows"]]
  assert kinds == ["inference", "parity_step", "learned_step", "encode",
                   "decode", "encode", "decode"]
  for row in loaded["rows"]:
    assert 0 < row["throughput_min"] <= row["throughput"] <= row[
        "throughput_max"] < math.inf
    assert row["fraction_of_peak"] >= 0
    loop = row.get("loop", "-")
    assert (f"| {row['kind']} | {row['model']} | {row['code']} | "
            f"{row['k'] or '-'} | {row['batch']} | {loop} |") in table
  for row in loaded["rows"][:3]:  # F in every one: FLOPs counted
    assert row["flops"] > 0 and row["fraction_of_peak"] > 0
  assert loaded["patterns"] == [] and "% bandwidth" in table
  learned = loaded["rows"][2]
  enc = 2 * _PIXELS  # the k = 2 MLP encoder: 512 -> 512 -> 256, and biases
  assert learned["params"] > enc * enc + enc * _PIXELS
  assert learned["adam_bytes"] == 28 * learned["params"]
  assert learned["adam_fraction_of_bandwidth"] > 0


def test_mlp_training_rows_scan_on_cpu(results):
  """What train.py runs for a step without convolutions: one lax.scan."""
  loops = [row.get("loop") for row in results["rows"]]
  assert loops == [None, "scan", "scan", None, None, None, None]


@pytest.mark.slow
def test_patterns_row(tmp_path):
  results = benchmark.run(_config("rows=patterns"))
  (pattern,) = results["patterns"]
  assert pattern["patterns"] == 2 and pattern["ratio"] > 0
  assert pattern["loop"] == "scan"
  assert 1 < pattern["flops_ratio"] < 1.5  # a second, small decoder pass
  table = benchmark.write(results, str(tmp_path), "patterns")
  assert "| all / single |" in table and "| 2 | 4 | scan |" in table


@pytest.mark.slow
def test_lenet5_training_row_loops_over_steps_on_cpu():
  """What train.py runs for a convolutional step on the CPU: jitted steps."""
  row = benchmark.parity_row(_config("models=lenet5,steps=1"), "lenet5", 2)
  assert row["loop"] == "steps" and row["flops"] > 0


def test_epoch_loop_forces_the_loop():
  row = benchmark.parity_row(_config("epoch_loop=steps,steps=1"), "mlp", 2)
  assert row["loop"] == "steps"


def test_bad_epoch_loop_is_a_clear_error():
  with pytest.raises(ValueError, match="epoch_loop must be one of"):
    benchmark.run(_config("epoch_loop=true"))


def test_unknown_row_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown rows or codes"):
    benchmark.run(_config("rows=parity+inferense"))


def test_peak_and_bandwidth_are_sane(results):
  peak = results["peak"]
  assert peak["xla_flops"] == peak["flops"] == 2 * 128**3
  assert 1e7 < peak["flops_per_sec"] < 1e15
  assert 1e7 < results["bandwidth"]["bytes_per_sec"] < 1e14


def test_step_flops_are_plausible(results):
  inference, parity, learned = results["rows"][:3]
  mlp = _PIXELS * 200 + 200 * 100 + 100 * 10  # multiply-adds per image
  assert 2 * mlp < inference["flops"] / 8 < 3 * mlp  # batch of 8 images
  # The parity model forward and backward on a batch of 4 parities.
  assert 3 * 2 * mlp < parity["flops"] / 4 < 5 * 2 * mlp
  # The MLP encoder (512 -> 512 -> 256) forward, its weight gradients and
  # fc_1's input gradient on 4 groups, then Adam's elementwise update.
  w0, w1 = (2 * _PIXELS)**2, 2 * _PIXELS * _PIXELS
  matmuls = 4 * (2 * 2 * w0 + 3 * 2 * w1)
  assert matmuls < learned["flops"] < matmuls + 30 * learned["params"]


def test_time_calls_measures_each_call():
  measured = timing.time_calls(lambda: time.sleep(0.01) or jnp.zeros(()),
                               repeats=3, min_seconds=0.05)
  assert measured.calls >= 3
  assert 0.009 < measured.min_s <= measured.median_s <= measured.max_s < 0.1


def test_time_alternating_keeps_functions_apart():
  timings = timing.time_alternating(
      {"short": lambda: time.sleep(0.01) or jnp.zeros(()),
       "long": lambda: time.sleep(0.03) or jnp.zeros(())}, repeats=3)
  assert 2 < timings["long"].median_s / timings["short"].median_s < 4


@pytest.mark.parametrize("analysis", [[{"flops": 5.0}], {"flops": 5.0}])
def test_cost_takes_a_list_or_a_dict(analysis):
  fake = type("Compiled", (), {"cost_analysis": lambda self: analysis})()
  assert timing.flops(fake) == 5.0


def test_cost_may_be_missing():
  fake = type("Compiled", (), {"cost_analysis": lambda self: None})()
  assert timing.cost(fake) == {} and math.isnan(timing.flops(fake))
