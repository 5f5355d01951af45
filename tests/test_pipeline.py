"""The streaming input pipeline: order, determinism, sharding and resume."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import parity as parity_config
from jaxcc import data
from jaxcc import experiment
from jaxcc import pipeline
from jaxcc import stages
from jaxcc import training
from jaxcc import workdir

_N = 103  # examples: not a multiple of any batch, so the tail is dropped


def _arrays(n=_N):
  rng = np.random.default_rng(0)
  return {"images": rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
          "targets": rng.normal(size=(n, 3)).astype(np.float32)}


def _chunks(arrays, indices, **kwargs):
  return list(pipeline.host_dataset(arrays, indices, **kwargs))


def _stacked(chunks):
  return {name: np.concatenate([c[name] for c in chunks])
          for name in chunks[0]}


@pytest.mark.parametrize("steps_per_chunk", [1, 3, 12])
def test_chunks_hold_the_in_memory_batches_in_order(steps_per_chunk):
  arrays = _arrays()
  idx_SBK = np.asarray(training.group_indices(2, 4)(jax.random.PRNGKey(3),
                                                    _N))
  chunks = _chunks(arrays, idx_SBK, steps_per_chunk=steps_per_chunk)
  assert [len(c["images"]) for c in chunks][:-1] == [steps_per_chunk] * (
      len(chunks) - 1)
  got = _stacked(chunks)
  steps = _N // 8
  assert got["images"].shape == (steps, 8, 4, 4, 1)
  for name, a in arrays.items():  # rows in the order of the groups' members
    np.testing.assert_array_equal(got[name],
                                  a[idx_SBK].reshape((steps, 8) + a.shape[1:]))


def test_same_key_same_epoch_and_epochs_differ():
  arrays, indices = _arrays(), training.batch_indices(5)
  key = jax.random.PRNGKey(0)

  def epoch(e):
    return _stacked(_chunks(arrays, indices(jax.random.fold_in(key, e), _N),
                            steps_per_chunk=4))["images"]
  np.testing.assert_array_equal(epoch(1), epoch(1))
  assert not np.array_equal(epoch(1), epoch(2))


@pytest.mark.parametrize("process_count", [2, 4])
def test_each_process_reads_its_own_rows_of_every_step(process_count):
  arrays = _arrays()
  indices = training.group_indices(2, 4)(jax.random.PRNGKey(1), _N)
  whole = _stacked(_chunks(arrays, indices, steps_per_chunk=5))
  shares = [_stacked(_chunks(arrays, indices, steps_per_chunk=5,
                             process_index=p, process_count=process_count))
            for p in range(process_count)]
  for name in arrays:
    assert shares[0][name].shape[1] == 8 // process_count
    np.testing.assert_array_equal(
        np.concatenate([s[name] for s in shares], axis=1), whole[name])


def test_host_rows_arithmetic_and_errors():
  assert [pipeline.host_rows(12, p, 3) for p in range(3)] == [
      slice(0, 4), slice(4, 8), slice(8, 12)]
  with pytest.raises(ValueError, match="split evenly"):
    pipeline.host_rows(10, 0, 4)
  with pytest.raises(ValueError, match="process index"):
    pipeline.host_rows(12, 3, 3)


def test_start_step_resumes_inside_an_epoch():
  arrays = _arrays()
  indices = training.batch_indices(4)(jax.random.PRNGKey(2), _N)
  whole = _stacked(_chunks(arrays, indices, steps_per_chunk=3))
  tail = _stacked(_chunks(arrays, indices, steps_per_chunk=3, start_step=7))
  for name in arrays:
    np.testing.assert_array_equal(tail[name], whole[name][7:])


def test_bad_inputs_are_clear_errors():
  arrays = _arrays()
  with pytest.raises(ValueError, match="differ in length"):
    pipeline.host_dataset({**arrays, "labels": np.zeros(3)}, np.zeros((2, 2),
                                                                     int))
  with pytest.raises(ValueError, match="integer"):
    pipeline.host_dataset(arrays, np.zeros((2, 2)))
  with pytest.raises(ValueError, match="start_step"):
    pipeline.host_dataset(arrays, np.zeros((2, 2), int), start_step=3)
  with pytest.raises(ValueError, match="resolved loop"):
    training.streamed_epoch(lambda *a: a, (2,), training.EpochLoop.AUTO)


def test_chunk_steps_targets_a_byte_size():
  arrays = _arrays()  # 16 + 12 bytes an example
  assert pipeline.chunk_steps(arrays, rows=8, target_bytes=28 * 8 * 5) == 5
  assert pipeline.chunk_steps(arrays, rows=8, target_bytes=1) == 1


def _toy_step(state, idx_BK, images, targets, scale):
  """A parity-like step: regress the group sum of targets from images."""
  x_BK = images[idx_BK].astype(jnp.float32).reshape(idx_BK.shape + (-1,))
  y_B = targets[idx_BK].sum(1)

  def loss_fn(w):
    return jnp.mean((x_BK.sum(1) @ w * scale - y_B) ** 2)
  loss, grad = jax.value_and_grad(loss_fn)(state)
  return state - 1e-6 * grad, loss


@pytest.mark.parametrize("loop, steps_per_chunk", [
    (training.EpochLoop.SCAN, 5), (training.EpochLoop.STEPS, 1),
    (training.EpochLoop.STEPS, 3)])
def test_streamed_epoch_equals_the_in_memory_epoch(loop, steps_per_chunk):
  arrays, key = _arrays(), jax.random.PRNGKey(5)
  indices = training.group_indices(2, 4)
  state = jnp.zeros((16, 3))
  memory_state, memory_losses = training.epoch(_toy_step, indices, loop)(
      state, key, scale=jnp.float32(0.5), **jax.device_put(arrays))
  streamed = training.streamed_epoch(_toy_step, (4, 2), loop)
  stream_state, stream_losses = streamed(
      jnp.zeros((16, 3)), pipeline.epoch_batches(
          arrays, np.asarray(indices(key, _N)),
          steps_per_chunk=steps_per_chunk), scale=jnp.float32(0.5))
  assert stream_losses.shape == (_N // 8,)
  np.testing.assert_allclose(stream_losses, memory_losses, rtol=1e-6)
  np.testing.assert_allclose(stream_state, memory_state, rtol=1e-6)


@pytest.mark.parametrize("loop", list(training.EpochLoop))
def test_pipeline_epoch_keeps_training_epochs_contract(loop):
  arrays, indices = _arrays(), training.group_indices(2, 4)
  memory = training.epoch(_toy_step, indices, loop)
  stream = pipeline.epoch(_toy_step, indices, arrays, loop)
  memory_state, stream_state = jnp.zeros((16, 3)), jnp.zeros((16, 3))
  for e in range(2):
    key = jax.random.PRNGKey(e)
    memory_state, memory_losses = memory(
        memory_state, key, scale=jnp.float32(0.5), **jax.device_put(arrays))
    stream_state, stream_losses = stream(stream_state, key,
                                         scale=jnp.float32(0.5))
    np.testing.assert_allclose(stream_losses, memory_losses, rtol=1e-6)
  np.testing.assert_allclose(stream_state, memory_state, rtol=1e-6)


def test_streamed_epochs_report_the_steps_done():
  arrays, indices = _arrays(), training.batch_indices(4)
  streamed = training.streamed_epoch(_toy_step, (4, 1),
                                     training.EpochLoop.STEPS)
  reported = []
  chunks = pipeline.epoch_batches(
      arrays, np.asarray(indices(jax.random.PRNGKey(0), _N))[:, :, None],
      steps_per_chunk=3)
  streamed(jnp.zeros((16, 3)), chunks, progress=reported.append, start=2,
           scale=jnp.float32(1))
  # 25 steps: 9 chunks, the last of one step; two chunks still running
  assert reported == [2 + done for done in range(3, 22, 3)]


def test_a_part_of_an_epoch_continues_where_the_first_part_stopped():
  arrays, indices = _arrays(), training.group_indices(2, 4)
  for loop in (training.EpochLoop.SCAN, training.EpochLoop.STEPS):
    for run in (training.epoch(_toy_step, indices, loop),
                pipeline.epoch(_toy_step, indices, arrays, loop)):
      given = jax.device_put(arrays) if hasattr(run, "scanned") else {}
      key, scale = jax.random.PRNGKey(4), jnp.float32(0.5)
      whole, whole_S = run(jnp.zeros((16, 3)), key, scale=scale, **given)
      half, first_S = run(jnp.zeros((16, 3)), key, stop=5, scale=scale,
                          **given)
      half, rest_S = run(half, key, start=5, scale=scale, **given)
      np.testing.assert_array_equal(np.concatenate([first_S, rest_S]),
                                    whole_S)
      np.testing.assert_array_equal(half, whole)
      with pytest.raises(ValueError, match="not a part of an epoch"):
        run(half, key, start=5, stop=5, scale=scale, **given)


def test_device_batches_assemble_the_global_batch_on_a_mesh():
  mesh = jax.make_mesh((1,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  arrays = _arrays()
  indices = training.batch_indices(4)(jax.random.PRNGKey(0), _N)
  placed = list(pipeline.epoch_batches(arrays, indices, mesh,
                                       steps_per_chunk=6))
  host = _chunks(arrays, indices, steps_per_chunk=6)
  assert len(placed) == len(host)
  for got, want in zip(placed, host):
    assert got["images"].sharding.spec == jax.sharding.PartitionSpec(
        None, "data")
    np.testing.assert_array_equal(np.asarray(got["images"]), want["images"])


# A tfds data source read by index (`data.SourceArray`, tfds mock data).


def test_a_tfds_source_streams_the_in_memory_batches(monkeypatch):
  with tfds.testing.mock_data(num_examples=_N + 3):
    images = data.load("mnist", validation_size=3, lazy=True).train.image
    assert isinstance(images, data.SourceArray) and len(images) == _N
    targets = _arrays()["targets"]
    indices, key = training.group_indices(2, 4), jax.random.PRNGKey(6)
    memory_state, memory_losses = training.epoch(
        _toy_step, indices, training.EpochLoop.SCAN)(
            jnp.zeros((784, 3)), key, scale=jnp.float32(0.5),
            **jax.device_put({"images": np.asarray(images),
                              "targets": targets}))
    read, rows = data.SourceArray.__getitem__, []
    monkeypatch.setattr(data.SourceArray, "__getitem__", lambda self, k: (
        rows.append(np.size(k)), read(self, k))[1])
    stream_state, stream_losses = pipeline.epoch(
        _toy_step, indices, {"images": images, "targets": targets},
        training.EpochLoop.SCAN)(jnp.zeros((784, 3)), key,
                                 scale=jnp.float32(0.5))
    assert sum(rows) == _N // 8 * 8  # each training group's members, once
    np.testing.assert_allclose(stream_losses, memory_losses, rtol=1e-6)
    np.testing.assert_allclose(stream_state, memory_state, rtol=1e-6)
    rows.clear()  # per-host sharding: a process reads only its rows
    share = _stacked(_chunks({"images": images}, indices(key, _N),
                             steps_per_chunk=4, process_index=1,
                             process_count=2))["images"]
    assert sum(rows) == _N // 8 * 4
    whole = np.asarray(images)[np.asarray(indices(key, _N))]
    np.testing.assert_array_equal(share, whole[:, 2:].reshape(share.shape))


# Training through stages.train (the embedded digits, a tiny budget).

_TINY = ("base_epochs=2,epochs=3,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


def _config(extra):
  return parity_config.get_config(_TINY + "," + extra)


def _states(directory):
  restored = workdir.restore(str(directory))
  return jax.tree.map(np.asarray, (restored.base, restored.stage2))


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra, message", [
    ("input_pipeline=disk", "input_pipeline must be"),
    ("max_device_bytes=-1", "max_device_bytes must be")])
def test_bad_input_pipeline_fails_before_writing_anything(tmp_path, extra,
                                                          message):
  with pytest.raises(ValueError, match=message):
    stages.train(_config(extra), str(tmp_path))
  assert not (tmp_path / "config.json").exists()


@pytest.mark.slow
def test_stream_and_memory_train_to_the_same_state(tmp_path, monkeypatch):
  stages.train(_config("input_pipeline=memory"), str(tmp_path / "memory"))
  streamed, real = [], pipeline.epoch_batches

  def counted(*args, **kwargs):
    streamed.append(1)
    return real(*args, **kwargs)
  monkeypatch.setattr(pipeline, "epoch_batches", counted)
  # auto streams a training set over max_device_bytes
  stages.train(_config("max_device_bytes=1000"), str(tmp_path / "stream"))
  assert len(streamed) == 2 + 3  # every epoch of both stages streamed
  _assert_same(_states(tmp_path / "stream"), _states(tmp_path / "memory"))


@pytest.mark.slow
def test_a_streamed_tfds_source_trains_as_the_memory_path(tmp_path,
                                                          monkeypatch):
  config = ("dataset=mnist,validation_size=30,base_epochs=1,epochs=2,"
            "checkpoint_every_secs=0,eval_every=100,input_pipeline=")
  load, loaded = data.load, {}

  def spied_load(*args, **kwargs):
    loaded[kwargs["lazy"]] = load(*args, **kwargs)
    return loaded[kwargs["lazy"]]
  monkeypatch.setattr(experiment.data, "load", spied_load)
  with tfds.testing.mock_data(num_examples=300):
    for pipe in ("memory", "stream"):
      stages.train(parity_config.get_config(config + pipe),
                   str(tmp_path / pipe))
    # memory loads the split whole; stream reads records from the source
    assert isinstance(loaded[True].train.image, data.SourceArray)
    assert isinstance(loaded[False].train.image, np.ndarray)
    _assert_same(_states(tmp_path / "stream"), _states(tmp_path / "memory"))


class _Interrupt(Exception):
  pass


@pytest.mark.slow
def test_interrupted_streamed_run_resumes_to_the_same_state(tmp_path,
                                                           monkeypatch):
  config = _config("input_pipeline=stream")
  stages.train(config, str(tmp_path / "straight"))
  real, calls = pipeline.epoch_batches, []

  def crashing(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:  # killed when stage 2's second epoch starts
      raise _Interrupt()
    return real(*args, **kwargs)
  monkeypatch.setattr(pipeline, "epoch_batches", crashing)
  with pytest.raises(_Interrupt):
    stages.train(config, str(tmp_path / "resumed"))
  monkeypatch.undo()
  stages.train(config, str(tmp_path / "resumed"))
  for resumed, straight in zip(
      jax.tree.leaves(_states(tmp_path / "resumed")),
      jax.tree.leaves(_states(tmp_path / "straight"))):
    np.testing.assert_array_equal(resumed, straight)
  epochs = [(r["stage"], r.get("epoch")) for r in map(
      json.loads, open(tmp_path / "resumed" / "metrics.jsonl"))]
  assert epochs == [("base", 1), ("base", 2), ("base", None), ("stage2", 1),
                    ("stage2", 2), ("stage2", 3), ("stage2", None)]


_SHARDED = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from configs import parity
    from jaxcc import experiment, parallel, pipeline, training

    mesh = parallel.data_mesh()
    exp = experiment.setup(parity.get_config("validation_size=200"), "/unused")
    ds, opt = exp.dataset, training.optimizer(1e-3, 1e-5)
    normalize = training.normalizer(ds.mean, ds.std)
    targets = np.random.default_rng(0).normal(size=(512, 10)).astype(
        np.float32)
    arrays = {"images": ds.train.image[:512], "targets": targets}
    indices = training.group_indices(2, 16)
    results = {}
    for name, m in (("single", None), ("memory", mesh), ("stream", mesh)):
      place = (lambda t: parallel.replicate(mesh, t)) if m else jax.device_put
      state = place(exp.approach.init(
          jax.random.PRNGKey(1), model=exp.model, code=exp.code, opt=opt,
          input_shape=ds.input_shape, base_state=None))
      step = exp.approach.step(model=exp.model, code=exp.code, opt=opt,
                               normalize=normalize, mesh=m)
      if name == "stream":
        run = pipeline.epoch(step, indices, arrays, training.EpochLoop.SCAN,
                             mesh)
        state, losses = run(state, jax.random.PRNGKey(2))
      else:
        run = training.epoch(step, indices, training.EpochLoop.SCAN)
        state, losses = run(state, jax.random.PRNGKey(2), **place(arrays))
      results[name] = jax.tree.map(np.asarray, (state.params, losses))
    for name in ("memory", "stream"):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(
          a, b, rtol=2e-4, atol=2e-5), results["single"], results[name])
      print("equal:", name)
    """)


@pytest.mark.slow
def test_streamed_sharded_epoch_equals_the_single_device_epoch():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)
  result = subprocess.run([sys.executable, "-c", _SHARDED], cwd=root,
                          env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("equal:") == 2
