"""A whole decoder model: embedding, L decoder layers, final norm, LM head."""

import jax
import jax.numpy as jnp
from flax import nnx

from nfp_jax.blocks import common
from nfp_jax.blocks.layer import DecoderLayer


class Model(nnx.Module):
  """Token ids [N] to logits [N, vocab]."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    self.embed = common.normal_param(rngs, (cfg.vocab, cfg.d_model), 1,
                                     cfg.param_dtype)
    self.layers = nnx.List([DecoderLayer(cfg, rngs=rngs)
                            for _ in range(cfg.n_layers)])
    self.final_norm = common.RMSNorm(cfg.d_model, dtype=cfg.dtype,
                                     param_dtype=cfg.param_dtype, rngs=rngs)
    self.lm_head = common.normal_param(rngs, (cfg.d_model, cfg.vocab),
                                       cfg.d_model, cfg.param_dtype)
    self.dtype = cfg.dtype

  def __call__(self, tokens, expert_ids=None):
    x = jnp.take(self.embed[...], tokens, axis=0).astype(self.dtype)
    for i, layer in enumerate(self.layers):
      with jax.named_scope(f'layer{i}'):
        x = layer(x, None if expert_ids is None else expert_ids[i])
    return common.matmul('lm_head', self.final_norm(x), self.lm_head[...],
                         self.dtype)
