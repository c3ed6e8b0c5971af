"""A pre-norm decoder layer: x + attn(norm(x)), then + ffn(norm(.))."""

import jax
from flax import nnx

from nfp_jax.blocks import common
from nfp_jax.blocks.attention import Attention
from nfp_jax.blocks.dense import DenseFFN
from nfp_jax.blocks.moe import MoEFFN


class DecoderLayer(nnx.Module):
  """RMSNorm, attention, RMSNorm, dense or MoE FFN, with residuals."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    self.attn_norm = common.RMSNorm(cfg.d_model, **kw)
    self.attention = Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads,
                               cfg.head_dim, cfg.kv_len, cfg.mask, cfg.attn_impl,
                               cfg.rope_theta, **kw)
    self.ffn_norm = common.RMSNorm(cfg.d_model, **kw)
    if cfg.is_moe:
      self.ffn = MoEFFN(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_k,
                        cfg.n_shared_experts, cfg.moe_impl, **kw)
    else:
      self.ffn = DenseFFN(cfg.d_model, cfg.d_ff, **kw)
    self.is_moe = cfg.is_moe

  def __call__(self, x, expert_ids=None):
    with jax.named_scope('attention'):
      x = x + self.attention(self.attn_norm(x))
    with jax.named_scope('ffn'):
      h = self.ffn_norm(x)
      return x + (self.ffn(h, expert_ids) if self.is_moe else self.ffn(h))
