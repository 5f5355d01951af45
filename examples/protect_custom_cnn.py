r"""Protect a model of your own: a custom CNN on MNIST, coded and served.

  python examples/protect_custom_cnn.py
  python examples/protect_custom_cnn.py --train_size=60000 --base_epochs=3 \
      --parity_epochs=10

1. Trains a small CNN F (with BatchNorm; not in jaxcc's zoo) on MNIST from
   TensorFlow Datasets (`tfds.data_source`, downloaded on first use).
2. Fits a k=2 summation parity model for it with `jaxcc.fit_parity_models`.
3. Evaluates the coded system with `jaxcc.evaluate_coded` (the fields of
   `eval.json`: A_a, A_d, reconstruction accuracy, A_o(f), ...).
4. Serves it in this process through `jaxcc.serving.Frontend`: two F
   instances, one of them slow, and one parity-model instance; predictions
   that the slow instance holds up are rebuilt from the parity output.

The tests run it on `tfds.testing.mock_data` with tiny sizes.
"""

import argparse
import asyncio
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxcc
from jaxcc import logs
from jaxcc import models
from jaxcc import serving
from jaxcc import tasks
from jaxcc import training


class SmallCNN(nn.Module):
  """Two strided convolutions (the first with BatchNorm) and a dense layer."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(16, (3, 3), strides=2)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def preprocess(images):
  """uint8 images -> float32 inputs in [0, 1]."""
  return np.asarray(images, np.float32) / 255.0


def load(dataset, split, size):
  """The first `size` `(images, labels)` of a tfds split, as NumPy arrays."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source(dataset, split=split)
  examples = [source[i] for i in range(min(size, len(source)))]
  return (np.stack([e["image"] for e in examples]),
          np.array([e["label"] for e in examples], np.int32))


def train_base(module, images, labels, *, key, epochs, batch_size=64):
  """F's variables after `epochs` epochs of Adam on the cross-entropy."""
  x_N = preprocess(images)
  model = models.wrap(module, x_N.shape[1:])
  opt = training.optimizer(1e-3, 0.0)
  init_key, epoch_key = jax.random.split(key)
  state = training.init_base(model, opt, init_key)
  epoch = training.epoch(
      training.base_step(model, opt, tasks.classification(10).base_loss,
                         lambda x: x),
      training.batch_indices(min(batch_size, len(x_N))))
  for e in range(epochs):
    state, loss_S = epoch(state, jax.random.fold_in(epoch_key, e),
                          images=jnp.asarray(x_N), labels=jnp.asarray(labels))
    logs.info(f"[F] epoch {e + 1}/{epochs} loss={float(loss_S.mean()):.4f}")
  return {"params": state.params, "batch_stats": state.batch_stats}


class InProcess:
  """A model instance in this process: `fn(x_B)` after a fixed delay."""
  alive = True

  def __init__(self, fn, delay_s=0.0):
    self.fn, self.delay_s = fn, delay_s

  def call(self, x_B, delay_s):
    future = asyncio.get_running_loop().create_future()

    def answer():
      if not future.done():
        future.set_result(self.fn(x_B))
    asyncio.get_running_loop().call_later(self.delay_s + delay_s, answer)
    return future


def bound(apply, model_variables):
  """`x_B -> apply(model_variables, x_B)` as NumPy."""
  return lambda x_B: np.asarray(apply(model_variables, x_B))


async def serve(module, variables, parity_variables, code, queries_Q,
                slow_s=0.2):
  """Answers every query (one example each) through the coding frontend."""
  apply = jax.jit(functools.partial(module.apply, train=False))
  base_pool = serving.SharedQueuePool([
      InProcess(bound(apply, variables)),
      InProcess(bound(apply, variables), delay_s=slow_s)])
  parity_pools = [
      serving.SharedQueuePool([InProcess(bound(
          apply, jax.tree.map(lambda a, j=j: a[j], parity_variables)))])
      for j in range(code.r)]
  frontend = serving.Frontend(base_pool, np.zeros(10, np.float32),
                              code=code, parity_pools=parity_pools)
  await frontend.start(queries_Q.shape[1:])
  answers = []
  for x in queries_Q:
    answers.append(asyncio.create_task(frontend.predict(x[None])))
    await asyncio.sleep(0.01)
  return await asyncio.gather(*answers)


def run(dataset="mnist", *, train_size=10_000, test_size=2_000,
        serve_size=40, base_epochs=2, parity_epochs=5, batch_size=64,
        seed=0) -> dict:
  """Steps 1-4 of the module docstring; returns the evaluation and a
  summary of the served answers."""
  key_f, key_p, key_e = jax.random.split(jax.random.PRNGKey(seed), 3)
  train_images, train_labels = load(dataset, "train", train_size)
  test_images, test_labels = load(dataset, "test", test_size)
  module = SmallCNN()
  variables = train_base(module, train_images, train_labels, key=key_f,
                         epochs=base_epochs, batch_size=batch_size)
  code = jaxcc.codes.summation(2)
  parity_variables = jaxcc.fit_parity_models(
      module, variables, train_images, code, key=key_p, epochs=parity_epochs,
      batch_size=min(batch_size, len(train_images) // code.k),
      preprocess=preprocess, init_from_base=True)
  results = jaxcc.evaluate_coded(
      module, variables, code, test_images, test_labels, key=key_e,
      parity_variables=parity_variables, preprocess=preprocess)
  queries_Q = preprocess(test_images[:serve_size])
  answers = asyncio.run(serve(module, variables, parity_variables, code,
                              queries_Q))
  predicted_Q = np.array([a.output[0].argmax() for a in answers])
  results["served"] = {
      "sources": {s: sum(a.source == s for a in answers)
                  for s in serving.SOURCES},
      "accuracy": float(np.mean(predicted_Q == test_labels[:serve_size])),
  }
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--train_size", type=int, default=10_000)
  parser.add_argument("--test_size", type=int, default=2_000)
  parser.add_argument("--base_epochs", type=int, default=2)
  parser.add_argument("--parity_epochs", type=int, default=5)
  args = parser.parse_args()
  logs.setup_scripts(verbose=False)
  results = run(args.dataset, train_size=args.train_size,
                test_size=args.test_size, base_epochs=args.base_epochs,
                parity_epochs=args.parity_epochs)
  for name in ("available_accuracy", "degraded_accuracy",
               "reconstruction_accuracy", "default_accuracy"):
    print(f"{name:<26} {results[name]:.4f}")
  print(f"served answers by source    {results['served']['sources']}")
  print(f"served accuracy             {results['served']['accuracy']:.4f}")


if __name__ == "__main__":
  main()
