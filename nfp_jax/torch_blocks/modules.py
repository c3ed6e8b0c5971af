"""PyTorch twins of the Flax linear, dense, MoE and attention blocks.

A twin has the Flax block's shapes, storage and compute dtypes, routing control
and masks, and takes its weights (and KV cache) from the Flax block's state, so
both compute the same function and their T(N) curves can be compared. Each op
mirrors the Flax code in nfp_jax/blocks/ line by line:

  Linear     x @ proj, in the compute dtype.
  DenseFFN   x @ gate, x @ up, silu(g) * u, @ down, in the compute dtype.
  MoEFFN     float32 router, top-k (or the forced expert ids) and a softmax
             over the chosen logits; routed experts by one of
               gather  the active experts' weights gathered into
                       S = min(E, N*k) slots laid side by side, one 2-D matmul
                       per projection (static shapes: argsort instead of the
                       data-dependent nonzero, so torch.compile sees no dynamic
                       shape);
               ragged  tokens sorted by expert and `torch._grouped_mm` with
                       cumulative group offsets, the closest PyTorch has to
                       `jax.lax.ragged_dot`; on the CPU ATen runs it as a loop
                       of one `aten::mm` per non-empty group (it reads each
                       group's size on the host);
               dense   every expert on every token (einsum), masked by the
                       gate weights;
             plus the always-on shared experts (a DenseFFN).
  Attention  fused QKV, RoPE (float32, half-split) on the new positions at
             L..L+N-1, GQA over the cache and the new block with the causal or
             block mask, O projection; `einsum` (scores over cache and block
             apart, one float32 softmax) or `sdpa`, the twin of
             `jax.nn.dot_product_attention`:
             `torch.nn.functional.scaled_dot_product_attention` with
             `enable_gqa=True` over the cache concatenated with the new keys.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx
import ml_dtypes

from nfp_jax import blocks

MODULES = ('linear', 'dense', 'moe', 'attention')
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16,
          'float16': torch.float16}


def to_torch(array) -> torch.Tensor:
  """A JAX or NumPy array as a CPU tensor with the same dtype and bits.

  NumPy has no bfloat16 of its own (JAX uses ml_dtypes'), so bfloat16 goes
  through its 16-bit pattern.
  """
  values = np.asarray(array)
  if values.dtype == ml_dtypes.bfloat16:
    return torch.from_numpy(values.view(np.int16).copy()).view(torch.bfloat16)
  return torch.from_numpy(values.copy())


def _weight(array) -> torch.nn.Parameter:
  return torch.nn.Parameter(to_torch(array), requires_grad=False)


def _matmul(x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
  """x @ w in the compute dtype (nfp_jax.blocks.common.matmul)."""
  return x.to(dtype) @ w.to(dtype)


class Linear(torch.nn.Module):
  """One projection on activations [N, d_model]: x @ proj."""

  def __init__(self, weights: dict, dtype: torch.dtype):
    super().__init__()
    self.proj = _weight(weights['proj'])
    self.dtype = dtype

  def forward(self, x):
    return _matmul(x, self.proj, self.dtype)


class DenseFFN(torch.nn.Module):
  """SwiGLU FFN on activations [N, d_model]: down(silu(gate(x)) * up(x))."""

  def __init__(self, weights: dict, dtype: torch.dtype):
    super().__init__()
    self.gate, self.up, self.down = (_weight(weights[name])
                                     for name in ('gate', 'up', 'down'))
    self.dtype = dtype

  def forward(self, x):
    g = _matmul(x, self.gate, self.dtype)
    u = _matmul(x, self.up, self.dtype)
    return _matmul(F.silu(g) * u, self.down, self.dtype)


class MoEFFN(torch.nn.Module):
  """Top-k routed SwiGLU experts on activations [N, d_model]."""

  def __init__(self, weights: dict, top_k: int, impl: str, dtype: torch.dtype):
    super().__init__()
    if impl not in ('gather', 'ragged', 'dense'):
      raise ValueError(f'Unknown MoE implementation {impl!r}.')
    self.router, self.gate, self.up, self.down = (
        _weight(weights[name]) for name in ('router', 'gate', 'up', 'down'))
    self.shared = DenseFFN(weights['shared'], dtype) if 'shared' in weights else None
    self.n_experts = self.gate.shape[0]
    self.top_k, self.impl, self.dtype = top_k, impl, dtype

  def route(self, x, expert_ids=None):
    """Expert ids [N, k] (int64) and their float32 gate weights [N, k]."""
    logits = x.float() @ self.router.float()
    if expert_ids is None:
      chosen, expert_ids = torch.topk(logits, self.top_k, dim=-1)
    else:
      chosen = torch.gather(logits, 1, expert_ids)
    return expert_ids, torch.softmax(chosen, dim=-1)

  def forward(self, x, expert_ids=None):
    ids, weights = self.route(x, expert_ids)
    experts = {'gather': self._gather, 'ragged': self._ragged,
               'dense': self._dense}[self.impl]
    out = experts(x, ids, weights)
    if self.shared is not None:
      out = out + self.shared(x)
    return out

  def _gather(self, x, ids, weights):
    n, k = ids.shape
    slots = min(self.n_experts, n * k)
    active = torch.zeros(self.n_experts, dtype=torch.bool, device=x.device)
    active[ids.reshape(-1)] = True
    # Active experts in increasing id order, then the fill value: the same slots
    # as jnp.nonzero(active, size=slots, fill_value=ids[0, 0]).
    order = torch.argsort((~active).to(torch.int8), stable=True)[:slots]
    valid = torch.arange(slots, device=x.device) < active.sum()
    slot_expert = torch.where(valid, order, ids[0, 0])
    hit = (ids[:, :, None] == slot_expert[None, None, :]) & valid
    combine = torch.where(hit, weights[:, :, None], 0.0).sum(dim=1)
    # Slots side by side, gathered straight into that layout (one copy of the
    # active weights, as XLA's gather fusion): [d, S, f] -> [d, S*f].
    d, f = self.gate.shape[1], self.gate.shape[2]
    side_by_side = lambda w: w.permute(1, 0, 2)[:, slot_expert].to(
        self.dtype).reshape(d, slots * f)
    x = x.to(self.dtype)
    g = x @ side_by_side(self.gate)
    u = x @ side_by_side(self.up)
    h = (F.silu(g) * u).reshape(n, slots, f) * combine[:, :, None].to(self.dtype)
    down = self.down[slot_expert].to(self.dtype)
    return h.reshape(n, slots * f) @ down.reshape(slots * f, d)

  def _ragged(self, x, ids, weights):
    n, k = ids.shape
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token = order // k
    ends = torch.cumsum(torch.bincount(flat, minlength=self.n_experts),
                        dim=0).to(torch.int32)
    dot = lambda a, w: torch._grouped_mm(a, w.to(self.dtype), offs=ends)  # pylint: disable=protected-access
    xs = x.to(self.dtype)[token]
    h = F.silu(dot(xs, self.gate)) * dot(xs, self.up)
    y = dot(h, self.down) * weights.reshape(-1)[order][:, None].to(self.dtype)
    out = torch.zeros((n, x.shape[-1]), dtype=self.dtype, device=x.device)
    return out.index_add(0, token, y)

  def _dense(self, x, ids, weights):
    combine = (F.one_hot(ids, self.n_experts).float()
               * weights[:, :, None]).sum(dim=1)
    x = x.to(self.dtype)
    g = torch.einsum('nd,edf->enf', x, self.gate.to(self.dtype))
    u = torch.einsum('nd,edf->enf', x, self.up.to(self.dtype))
    y = torch.einsum('enf,efd->end', F.silu(g) * u, self.down.to(self.dtype))
    return torch.einsum('end,ne->nd', y, combine.to(self.dtype))


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
  """Rotary embedding (half-split layout) of x [N, heads, head_dim], in float32."""
  half = x.shape[-1] // 2
  freq = theta ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
  angle = positions.float()[:, None, None] * freq
  x32 = x.float()
  x1, x2 = x32[..., :half], x32[..., half:]
  cos, sin = torch.cos(angle), torch.sin(angle)
  return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class Attention(torch.nn.Module):
  """Fused QKV, RoPE, GQA attention over cache + block, O projection."""

  def __init__(self, weights: dict, *, n_heads: int, n_kv_heads: int,
               head_dim: int, mask: str, impl: str, rope_theta: float,
               dtype: torch.dtype):
    super().__init__()
    if mask not in ('causal', 'block'):
      raise ValueError(f'Unknown mask {mask!r}.')
    if impl not in ('einsum', 'sdpa'):
      raise ValueError(f'Unknown attention implementation {impl!r}.')
    self.qkv, self.o = _weight(weights['qkv']), _weight(weights['o'])
    self.register_buffer('cache_k', to_torch(weights['cache_k']))
    self.register_buffer('cache_v', to_torch(weights['cache_v']))
    self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
    self.kv_len = self.cache_k.shape[0]
    self.mask, self.impl, self.rope_theta, self.dtype = mask, impl, rope_theta, dtype

  def forward(self, x):
    n = x.shape[0]
    h, hk, hd = self.n_heads, self.n_kv_heads, self.head_dim
    qkv = _matmul(x, self.qkv, self.dtype)
    q = qkv[:, :h * hd].reshape(n, h, hd)
    k = qkv[:, h * hd:(h + hk) * hd].reshape(n, hk, hd)
    v = qkv[:, (h + hk) * hd:].reshape(n, hk, hd)
    positions = self.kv_len + torch.arange(n, device=x.device)
    q = rope(q, positions, self.rope_theta)
    k = rope(k, positions, self.rope_theta)
    cache_k, cache_v = self.cache_k.to(self.dtype), self.cache_v.to(self.dtype)
    block_visible = torch.ones((n, n), dtype=torch.bool, device=x.device)
    if self.mask == 'causal':
      block_visible = torch.tril(block_visible)
    attend = self._einsum if self.impl == 'einsum' else self._sdpa
    out = attend(q, k, v, cache_k, cache_v, block_visible)
    return _matmul(out.reshape(n, h * hd), self.o, self.dtype)

  def _einsum(self, q, k, v, cache_k, cache_v, block_visible):
    n, h, hd = q.shape
    hk = self.n_kv_heads
    qg = q.reshape(n, hk, h // hk, hd) * hd ** -0.5
    s_cache = torch.einsum('nkgd,lkd->kgnl', qg, cache_k).float()
    s_block = torch.einsum('nkgd,mkd->kgnm', qg, k).float()
    s_block = s_block.masked_fill(~block_visible, -math.inf)
    p = torch.softmax(torch.cat([s_cache, s_block], dim=-1), dim=-1).to(self.dtype)
    out = (torch.einsum('kgnl,lkd->nkgd', p[..., :self.kv_len], cache_v)
           + torch.einsum('kgnm,mkd->nkgd', p[..., self.kv_len:], v))
    return out.reshape(n, h, hd)

  def _sdpa(self, q, k, v, cache_k, cache_v, block_visible):
    n = q.shape[0]
    keys = torch.cat([cache_k, k], dim=0).permute(1, 0, 2)[None]
    values = torch.cat([cache_v, v], dim=0).permute(1, 0, 2)[None]
    visible = torch.cat([torch.ones((n, self.kv_len), dtype=torch.bool,
                                    device=q.device), block_visible], dim=1)
    out = F.scaled_dot_product_attention(q.permute(1, 0, 2)[None], keys, values,
                                         attn_mask=visible, enable_gqa=True)
    return out[0].permute(1, 0, 2)


def from_flax(cfg, state) -> torch.nn.Module:
  """The twin of the Flax block of `cfg`, with the weights of `state` copied.

  Args:
    cfg: a BlockConfig whose module is one of MODULES.
    state: the nnx.State of the Flax block (from `nfp_jax.blocks.forward`).
  """
  if cfg.module not in MODULES:
    raise ValueError(f'No PyTorch twin of module {cfg.module!r}; twins exist for '
                     f'{", ".join(MODULES)}.')
  weights = nnx.to_pure_dict(state)
  dtype = DTYPES[cfg.dtype]
  if cfg.module == 'linear':
    return Linear(weights, dtype)
  if cfg.module == 'dense':
    return DenseFFN(weights, dtype)
  if cfg.module == 'moe':
    return MoEFFN(weights, cfg.top_k, cfg.moe_impl, dtype)
  return Attention(weights, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                   head_dim=cfg.head_dim, mask=cfg.mask,
                   impl='sdpa' if cfg.attn_impl == 'dpa' else 'einsum',
                   rope_theta=cfg.rope_theta, dtype=dtype)


def build(cfg) -> torch.nn.Module:
  """The twin of `nfp_jax.blocks.build(cfg)`: same seed, same weights."""
  _, state = blocks.forward(cfg)
  return from_flax(cfg, state)


def inputs(cfg, positions: int, max_positions: int | None = None) -> tuple:
  """The inputs of `nfp_jax.blocks.inputs` as tensors: the same activations and
  the same forced expert ids (as int64, PyTorch's index type)."""
  args = tuple(to_torch(a) for a in blocks.inputs(cfg, positions, max_positions))
  if len(args) == 2:
    args = (args[0], args[1].long())
  return args
