"""One projection y = x @ W, no activation: the primitive of QKV, O, up, down and
LM-head projections, and the unit that public GEMM profiles measure."""

from flax import nnx

from nfp_jax.blocks import common


class Linear(nnx.Module):
  """x [N, d_model] @ W [d_model, d_ff] in the compute dtype."""

  def __init__(self, d_model: int, d_ff: int, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.proj = common.normal_param(rngs, (d_model, d_ff), d_model, param_dtype)
    self.dtype = dtype

  def __call__(self, x):
    return common.matmul('proj', x, self.proj[...], self.dtype)
