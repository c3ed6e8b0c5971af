"""Flax NNX blocks, built from a BlockConfig, and the inputs of their forward.

`build(cfg)` makes the module; `forward(cfg)` gives a pure function
`f(state, *inputs)` and the module's state, so the same forward is compiled with
concrete arrays (to measure) or with `jax.ShapeDtypeStruct`s (to read a tiling).
Blocks know nothing of timing or HLO.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nfp_jax import routing
from nfp_jax.blocks.attention import Attention
from nfp_jax.blocks.dense import DenseFFN
from nfp_jax.blocks.layer import DecoderLayer
from nfp_jax.blocks.linear import Linear
from nfp_jax.blocks.model import Model
from nfp_jax.blocks.moe import MoEFFN

__all__ = ['Attention', 'DenseFFN', 'DecoderLayer', 'Linear', 'Model', 'MoEFFN',
           'build', 'forward', 'abstract_forward', 'inputs', 'abstract_inputs',
           'state_bytes']


def build(cfg, rngs: nnx.Rngs | None = None) -> nnx.Module:
  """The NNX module of `cfg`, initialised deterministically from cfg.seed."""
  rngs = rngs or nnx.Rngs(params=cfg.seed, cache=cfg.seed + 1)
  kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
  if cfg.module == 'linear':
    return Linear(cfg.d_model, cfg.d_ff, **kw)
  if cfg.module == 'dense':
    return DenseFFN(cfg.d_model, cfg.d_ff, **kw)
  if cfg.module == 'moe':
    return MoEFFN(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_k,
                  cfg.n_shared_experts, cfg.moe_impl, **kw)
  if cfg.module == 'attention':
    return Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                     cfg.kv_len, cfg.mask, cfg.attn_impl, cfg.rope_theta, **kw)
  if cfg.module == 'layer':
    return DecoderLayer(cfg, rngs=rngs)
  return Model(cfg, rngs=rngs)


def _apply(graphdef):
  def f(state, *args):
    return nnx.merge(graphdef, state)(*args)
  return f


def forward(cfg):
  """(f, state): f(state, *inputs) runs the block; state holds concrete arrays."""
  graphdef, state = nnx.split(build(cfg))
  return _apply(graphdef), state


def abstract_forward(cfg):
  """(f, state) with a state of ShapeDtypeStructs: nothing is allocated."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: build(cfg)))
  return _apply(graphdef), state


def state_bytes(cfg) -> int:
  """Bytes of the block's state (weights, KV cache) as it is allocated to be
  measured, from its abstract state (nothing is allocated)."""
  _, state = abstract_forward(cfg)
  return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(state))


def _routing_layers(cfg) -> int:
  return cfg.n_layers if cfg.module == 'model' else 1


def inputs(cfg, positions: int, max_positions: int | None = None):
  """Concrete inputs of a forward with N=positions: activations (or token ids),
  plus forced expert ids when routing is controlled.

  Forced ids are drawn for `max_positions` and cut to the first `positions`, so
  every N of a sweep sees a prefix of the same routing.
  """
  rng = np.random.default_rng([cfg.seed, 3])
  if cfg.module == 'model':
    x = jnp.asarray(rng.integers(0, cfg.vocab, size=(positions,)), jnp.int32)
  else:
    x = jnp.asarray(rng.standard_normal((positions, cfg.d_model)), cfg.dtype)
  if not cfg.is_moe:
    return (x,)
  ids = routing.expert_ids(cfg.routing, max_positions or positions, cfg.n_experts,
                           cfg.top_k, cfg.seed, _routing_layers(cfg))
  if ids is None:
    return (x,)
  ids = jnp.asarray(ids[:, :positions])
  return (x, ids if cfg.module == 'model' else ids[0])


def abstract_inputs(cfg, positions: int):
  """The inputs of `inputs()` as ShapeDtypeStructs."""
  if cfg.module == 'model':
    x = jax.ShapeDtypeStruct((positions,), jnp.int32)
  else:
    x = jax.ShapeDtypeStruct((positions, cfg.d_model), jnp.dtype(cfg.dtype))
  if not cfg.is_moe or routing.parse(cfg.routing).kind == 'learned':
    return (x,)
  shape = (positions, cfg.top_k)
  if cfg.module == 'model':
    shape = (cfg.n_layers,) + shape
  return (x, jax.ShapeDtypeStruct(shape, jnp.int32))
