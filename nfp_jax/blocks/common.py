"""Pieces shared by the blocks: parameters, matmuls with named scopes, norm, RoPE."""

import jax
import jax.numpy as jnp
from flax import nnx


class KVCache(nnx.Variable):
  """A KV cache: state of the forward, not a trained parameter."""


def normal_param(rngs: nnx.Rngs, shape, fan_in: int, param_dtype) -> nnx.Param:
  """A weight drawn from N(0, 1/fan_in), stored in `param_dtype`."""
  w = jax.random.normal(rngs.params(), shape, jnp.float32) * fan_in ** -0.5
  return nnx.Param(w.astype(param_dtype))


def matmul(name: str, x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  """x @ w in the compute dtype, under a named scope the HLO metadata keeps."""
  with jax.named_scope(name):
    return jnp.dot(x.astype(dtype), w.astype(dtype))


class RMSNorm(nnx.Module):
  """RMSNorm computed in float32, output in the compute dtype."""

  def __init__(self, dim: int, *, dtype, param_dtype, eps: float = 1e-6,
               rngs: nnx.Rngs):
    del rngs
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.dtype = dtype
    self.eps = eps

  def __call__(self, x):
    with jax.named_scope('norm'):
      x32 = x.astype(jnp.float32)
      y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
      return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotary embedding (half-split layout) of x [N, heads, head_dim], in float32."""
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions.astype(jnp.float32)[:, None, None] * freq
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., :half], x32[..., half:]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin],
                         axis=-1).astype(x.dtype)
