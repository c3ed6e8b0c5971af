"""GQA attention decoding N new positions over a KV cache of length L.

The new positions sit at L, L+1, ..., L+N-1 and get RoPE; the cache holds keys
that are already rotated. Masks:
  causal  autoregressive: each new position sees the whole cache and the new
          positions up to itself;
  block   diffusion: each new position sees the whole cache and the whole block.
Implementations:
  einsum  scores over the cache and over the new block are computed apart and
          share one float32 softmax, so the cache is read in place, never copied;
  dpa     `jax.nn.dot_product_attention(implementation='xla')`, which takes one
          key/value array: the new keys are concatenated to the cache (a copy
          of the cache per forward, a cost of this implementation).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nfp_jax.blocks import common


class Attention(nnx.Module):
  """Fused QKV projection, RoPE, GQA attention over cache + block, O projection."""

  def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int,
               kv_len: int, mask: str = 'causal', impl: str = 'einsum',
               rope_theta: float = 10000.0, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    qkv_width = (n_heads + 2 * n_kv_heads) * head_dim
    self.qkv = common.normal_param(rngs, (d_model, qkv_width), d_model, param_dtype)
    self.o = common.normal_param(rngs, (n_heads * head_dim, d_model),
                                 n_heads * head_dim, param_dtype)
    cache_shape = (kv_len, n_kv_heads, head_dim)
    self.cache_k = common.KVCache(
        jax.random.normal(rngs.cache(), cache_shape).astype(param_dtype))
    self.cache_v = common.KVCache(
        jax.random.normal(rngs.cache(), cache_shape).astype(param_dtype))
    self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
    self.kv_len, self.mask, self.impl = kv_len, mask, impl
    self.rope_theta, self.dtype = rope_theta, dtype

  def __call__(self, x):
    n = x.shape[0]
    h, hk, hd = self.n_heads, self.n_kv_heads, self.head_dim
    qkv = common.matmul('qkv', x, self.qkv[...], self.dtype)
    q = qkv[:, :h * hd].reshape(n, h, hd)
    k = qkv[:, h * hd:(h + hk) * hd].reshape(n, hk, hd)
    v = qkv[:, (h + hk) * hd:].reshape(n, hk, hd)
    positions = self.kv_len + jnp.arange(n)
    with jax.named_scope('rope'):
      q = common.rope(q, positions, self.rope_theta)
      k = common.rope(k, positions, self.rope_theta)
    cache_k = self.cache_k[...].astype(self.dtype)
    cache_v = self.cache_v[...].astype(self.dtype)
    block_visible = (jnp.tril(jnp.ones((n, n), jnp.bool_)) if self.mask == 'causal'
                     else jnp.ones((n, n), jnp.bool_))
    attend = self._einsum if self.impl == 'einsum' else self._dpa
    out = attend(q, k, v, cache_k, cache_v, block_visible)
    return common.matmul('o', out.reshape(n, h * hd), self.o[...], self.dtype)

  def _einsum(self, q, k, v, cache_k, cache_v, block_visible):
    n, h, hd = q.shape
    hk = self.n_kv_heads
    qg = q.reshape(n, hk, h // hk, hd) * hd ** -0.5
    f32 = jnp.float32
    with jax.named_scope('scores'):
      s_cache = jnp.einsum('nkgd,lkd->kgnl', qg, cache_k, preferred_element_type=f32)
      s_block = jnp.einsum('nkgd,mkd->kgnm', qg, k, preferred_element_type=f32)
      s_block = jnp.where(block_visible, s_block, -jnp.inf)
    with jax.named_scope('softmax'):
      p = jax.nn.softmax(jnp.concatenate([s_cache, s_block], axis=-1), axis=-1)
      p = p.astype(self.dtype)
    with jax.named_scope('values'):
      out = (jnp.einsum('kgnl,lkd->nkgd', p[..., :self.kv_len], cache_v)
             + jnp.einsum('kgnm,mkd->nkgd', p[..., self.kv_len:], v))
    return out.reshape(n, h, hd)

  def _dpa(self, q, k, v, cache_k, cache_v, block_visible):
    n = q.shape[0]
    keys = jnp.concatenate([cache_k, k], axis=0)[None]
    values = jnp.concatenate([cache_v, v], axis=0)[None]
    visible = jnp.concatenate(
        [jnp.ones((n, self.kv_len), jnp.bool_), block_visible], axis=1)
    with jax.named_scope('dpa'):
      out = jax.nn.dot_product_attention(q[None], keys, values,
                                         mask=visible[None, None],
                                         implementation='xla')
    return out[0]
