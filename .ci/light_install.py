"""CI: with only jaxcc's core dependencies, import it and fit parity models."""
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxcc


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1))))


model = Net()
variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))
images = np.random.default_rng(0).normal(size=(256, 6)).astype(np.float32)
labels = np.asarray(jnp.argmax(model.apply(variables, images), -1))
code = jaxcc.codes.summation(2)
parity = jaxcc.fit_parity_models(model, variables, images, code,
                                 key=jax.random.PRNGKey(1), epochs=2,
                                 batch_size=16, progress=False)
results = jaxcc.evaluate_coded(model, variables, code, images, labels,
                               key=jax.random.PRNGKey(2),
                               parity_variables=parity)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {
    "tensorflow", "tensorflow_datasets", "ray", "matplotlib", "grain",
    "ml_collections"})
assert not heavy, heavy
print("ok", results["available_accuracy"], results["degraded_accuracy"])
