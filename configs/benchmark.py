"""Throughput benchmarks: inference, training steps and codes.

  python benchmark.py --config configs/benchmark.py[:key=value,...] \
      [--out benchmarks/results]

Lists take "+" or "," between items (`models=mlp,lenet5,ks=2,4`). The
training rows run their epochs as train.py does (`epoch_loop`, as in
configs/common.py) and record the loop they used. The defaults suit a CPU; GPU-sized runs raise the batches, e.g.

  python benchmark.py --config configs/benchmark.py:models=mlp,lenet5,vgg11,\
resnet18,resnet152,batch=256,inference_batch=4096,code_batch=8192,\
peak_size=8192,bandwidth_mib=1024

Columns, units and measured tables: docs/BENCHMARKS.md.
"""

import ml_collections

from configs import common


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.name = "benchmark"  # results go to <out>/<name>.json and <name>.md
  c.models = "mlp+lenet5"  # mlp | lenet5 | vgg11 | resnet18 | resnet152
  c.ks = "2+4"
  # inference | parity | learned | patterns (all vs one pattern) | codes
  c.rows = "inference+parity+learned+patterns+codes"
  c.encoders = "mlp"  # learned-code encoders of the learned and patterns rows
  # summation | linear (r = 2) | concatenation | berrut | learned-mlp | -conv
  c.codes = "summation+linear+concatenation+berrut+learned-mlp+learned-conv"
  c.image_shape = "28+28+1"  # one synthetic example, (H, W, C)
  c.num_classes = 10
  c.batch = 64  # coding groups per training step (the paper's 64)
  c.steps = 20  # steps per timed epoch
  # auto (train.py's default: a loop of jitted steps on the CPU for a step
  # with a convolution, else one lax.scan) | scan | steps
  c.epoch_loop = "auto"
  c.inference_batch = 256  # images per inference call
  c.code_batch = 1024  # groups per encode or decode call
  c.repeats = 5
  c.min_seconds = 0.05  # fast calls: average as many as last this long
  c.peak_size = 2048  # peak: a size x size float32 matmul
  c.bandwidth_mib = 256  # bandwidth: axpy over two arrays of this size
  c.train = common.base_config()  # optimiser, loss and mixed_precision
  del c.train.epoch_loop  # the field above
  return common.apply_args(c, _join_lists(arg))


def _join_lists(arg: str) -> str:
  """`models=mlp,lenet5,k=2` -> `models=mlp+lenet5,k=2`."""
  items = []
  for item in (arg or "").split(","):
    if items and "=" not in item:
      items[-1] += "+" + item
    else:
      items.append(item)
  return ",".join(items)
