"""Float32 decoding error of `jaxcc.codes.linear(k, r)` over a random linear F.

  python experiments/linear_precision.py

For every k <= 8 and r <= 4, encodes random inputs, runs a random linear F on
data and parity inputs, decodes every pattern with 1..r missing outputs, and
prints the worst relative error (Frobenius norm over the missing outputs) and
the worst condition number of G's square submatrices, as a markdown table.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxcc


def worst_error(k, r, rng):
  code = jaxcc.codes.linear(k, r)
  w = jnp.asarray(rng.normal(size=(64, 10)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(256, k, 64)), jnp.float32)
  y = jnp.concatenate([x @ w, code.encode({}, x) @ w], axis=1)
  patterns = jaxcc.erasures.patterns(k, r, missing=range(1, r + 1))
  recon = np.asarray(jax.jit(jax.vmap(code.decode, (None, None, 0)))(
      {}, y, patterns))
  true = np.asarray(x @ w)
  return max(np.linalg.norm(rec[:, ~p[:k]] - true[:, ~p[:k]]) /
             np.linalg.norm(true[:, ~p[:k]]) for rec, p in zip(recon, patterns))


def main():
  rng = np.random.default_rng(0)
  print("| k | " + " | ".join(f"r = {r}" for r in range(1, 5)) + " |")
  print("|---" * 5 + "|")
  for k in range(1, 9):
    cells = []
    for r in range(1, 5):
      cond = jaxcc.codes.worst_condition(jaxcc.codes.generator(k, r))
      cells.append(f"{worst_error(k, r, rng):.1e} (cond {cond:.0f})")
    print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
