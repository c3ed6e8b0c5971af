"""Dense SwiGLU FFN: down(silu(gate(x)) * up(x))."""

import jax
from flax import nnx

from nfp_jax.blocks import common


class DenseFFN(nnx.Module):
  """SwiGLU FFN on activations [N, d_model]."""

  def __init__(self, d_model: int, d_ff: int, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.gate = common.normal_param(rngs, (d_model, d_ff), d_model, param_dtype)
    self.up = common.normal_param(rngs, (d_model, d_ff), d_model, param_dtype)
    self.down = common.normal_param(rngs, (d_ff, d_model), d_ff, param_dtype)
    self.dtype = dtype

  def __call__(self, x):
    g = common.matmul('gate', x, self.gate[...], self.dtype)
    u = common.matmul('up', x, self.up[...], self.dtype)
    return common.matmul('down', jax.nn.silu(g) * u, self.down[...], self.dtype)
