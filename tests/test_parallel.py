"""Data-parallel steps on 8 fake CPU devices equal the single-device steps."""

import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from configs import learned, parity
    from jaxcc import experiment, models, parallel, training

    assert jax.device_count() == 8
    mesh = parallel.data_mesh()

    def run(config, stage, with_mesh):
      exp = experiment.setup(config, "/unused")
      ds = exp.dataset
      opt = training.optimizer(1e-3, 1e-5)
      normalize = training.normalizer(ds.mean, ds.std)
      base = training.init_base(exp.model, opt, jax.random.PRNGKey(0))
      images, labels = ds.train.image[:512], ds.train.label[:512]
      m = mesh if with_mesh else None
      place = (lambda t: parallel.replicate(mesh, t)) if with_mesh else (
          jax.device_put)
      if stage == "base":
        state, args = base, dict(labels=labels)
        step = training.base_step(exp.model, opt, exp.task.base_loss,
                                  normalize, m)
        indices = training.batch_indices(config.base.batch_size)
      else:
        state = exp.approach.init(
            jax.random.PRNGKey(1), model=exp.model, code=exp.code, opt=opt,
            input_shape=ds.input_shape, base_state=base)
        outputs = np.random.default_rng(0).normal(
            size=(512, 10)).astype(np.float32)
        args = exp.approach.arrays(
            task=exp.task, split=ds.train._replace(label=labels),
            outputs_NC=outputs,
            base_vars=models.variables(base.params, base.batch_stats))
        step = exp.approach.step(model=exp.model, code=exp.code, opt=opt,
                                 normalize=normalize, mesh=m)
        indices = training.group_indices(config.k, config.parity.batch_size)
      epoch = training.epoch(step, indices, training.EpochLoop.SCAN)
      state, losses = epoch(place(state), jax.random.PRNGKey(2),
                            images=place(images), **place(args))
      return jax.tree.map(np.asarray, (state.params, losses))

    cases = [(parity.get_config("validation_size=200"), "base"),
             (parity.get_config("validation_size=200,k=3,r=1,batch_size=16"),
              "parity"),
             (learned.get_config("validation_size=200,batch_size=16"),
              "learned")]
    for config, stage in cases:
      single = run(config, stage, False)
      sharded = run(config, stage, True)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(
          a, b, rtol=2e-4, atol=2e-5), single, sharded)
      print("equal:", stage)
    """)


@pytest.mark.slow
def test_sharded_steps_equal_single_device_steps():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)
  result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("equal:") == 3


def test_batch_must_divide_over_devices():
  import pytest  # pylint: disable=g-import-not-at-top
  from jaxcc import parallel  # pylint: disable=g-import-not-at-top

  class FakeMesh:
    size = 8
  with pytest.raises(ValueError, match="divisible by the 8 devices"):
    parallel.check_batch(FakeMesh(), 12, "parity.batch_size")
