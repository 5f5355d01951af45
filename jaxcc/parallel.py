"""Data parallelism over every device of every host: one `data` mesh axis.

Parameters and the device-resident dataset are replicated; each step's batch
is sharded along its leading axis, and XLA partitions the step (gradients are
all-reduced) from the sharding constraint alone: no `pmap`. With several
hosts (`jax.distributed.initialize()` first), every host holds the dataset,
draws the same permutation, and gathers only the rows of its own devices'
batch shards.
"""

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np


def data_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over all devices (of all processes)."""
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicate(mesh, tree):
  """Places every leaf of `tree` on all devices of `mesh`."""
  sharding = NamedSharding(mesh, P())

  def place(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])
  return jax.tree.map(place, tree)


def shard_batch(mesh, *arrays):
  """Constrains arrays (inside `jit`) to be split along axis 0 over `data`."""
  if mesh is None:
    return arrays
  sharding = NamedSharding(mesh, P("data"))
  return tuple(jax.lax.with_sharding_constraint(a, sharding) for a in arrays)


def check_batch(mesh, batch_size: int, what: str) -> None:
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"{what}={batch_size} must be divisible by the "
                     f"{mesh.size} devices it is split over")
