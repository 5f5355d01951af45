"""Data-parallel steps on 8 fake CPU devices equal the single-device steps."""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from configs import learned, parity
    from jaxcc import experiment, parallel, training

    assert jax.device_count() == 8
    mesh = parallel.data_mesh()

    def run(config, build, with_mesh):
      exp = experiment.setup(config, "/unused")
      base = experiment.init_base(exp, jax.random.PRNGKey(0))
      images = exp.dataset.train.image[:512]
      labels = exp.dataset.train.label[:512]
      m = mesh if with_mesh else None
      place = (lambda t: parallel.replicate(mesh, t)) if with_mesh else (
          jax.device_put)
      if build is training.base_epoch:
        state, args = base, dict(labels=labels)
      else:
        state = experiment.init_stage2(exp, jax.random.PRNGKey(1), base)
        outputs = np.random.default_rng(0).normal(
            size=(512, 10)).astype(np.float32)
        args = (dict(targets=outputs) if build is training.parity_epoch else
                dict(outputs=outputs, labels=labels, base_vars=
                     experiment.variables(base.params, base.batch_stats)))
      args = {k: place(v) for k, v in args.items()}
      state, losses = build(exp, m)(place(state), jax.random.PRNGKey(2),
                                    images=place(images), **args)
      return jax.tree.map(np.asarray, (state.params, losses))

    cases = [(parity.get_config("validation_size=200"), training.base_epoch),
             (parity.get_config("validation_size=200,k=3,r=1,batch_size=16"),
              training.parity_epoch),
             (learned.get_config("validation_size=200,batch_size=16"),
              training.learned_epoch)]
    for config, build in cases:
      single = run(config, build, False)
      sharded = run(config, build, True)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(
          a, b, rtol=2e-4, atol=2e-5), single, sharded)
      print("equal:", build.__name__)
    """)


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
