"""Analytic FLOPs and bytes of a block's kernels at N positions (the resource terms).

These are the ideal counts of principle.md, from shapes alone: each weight (and
the KV cache) read once, activations in and out, useful FLOPs only (for MoE, the
top_k experts of each position and the E_act(N) activated experts' weights, under
the routing model). What an implementation adds on top (a dense MoE running all
experts, a copied cache, dtype conversions) is the predictor's business, not the
idle-compute baseline's.
"""

import dataclasses

import numpy as np

from nfp_jax import routing


def itemsize(dtype: str) -> int:
  return np.dtype({'bfloat16': 'float16'}.get(dtype, dtype)).itemsize


@dataclasses.dataclass(frozen=True)
class KernelCost:
  """One GEMM-like kernel (or a cheap elementwise one) of a block at N positions.

  rows is the dimension that carries the positions (N, N*top_k, ...); the kernel
  is `groups` matmuls of [rows, contraction] x [contraction, width].
  """
  name: str
  flops: float
  weight_bytes: float  # weights and cache state read
  act_bytes: float  # activations read and written
  rows: int = 0
  contraction: int = 0
  width: int = 0
  groups: int = 1
  count: int = 1  # identical copies (layers of a model)

  @property
  def bytes(self) -> float:
    return self.weight_bytes + self.act_bytes


def _gemm(name, rows, contraction, width, wbytes, abytes, groups=1,
          weight_groups=None) -> KernelCost:
  weight_groups = groups if weight_groups is None else weight_groups
  return KernelCost(
      name=name, flops=2.0 * rows * contraction * width * groups,
      weight_bytes=float(weight_groups) * contraction * width * wbytes,
      act_bytes=float(groups) * rows * (contraction + width) * abytes,
      rows=rows, contraction=contraction, width=width, groups=groups)


def _dense(cfg, n, wb, ab, prefix='', d_ff=None):
  d, f = cfg.d_model, d_ff or cfg.d_ff
  return [_gemm(prefix + 'gate', n, d, f, wb, ab),
          _gemm(prefix + 'up', n, d, f, wb, ab),
          _gemm(prefix + 'down', n, f, d, wb, ab)]


def _moe(cfg, n, wb, ab, layer=0):
  d, f, e, k = cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_k
  active = routing.expected_active_experts(cfg.routing, n, e, k, layer)
  out = [_gemm('router', n, d, e, wb, 4)]
  # N*k rows spread over `active` experts: flops of N*k rows, weights of `active`.
  for name, (c, w) in (('expert_gate', (d, f)), ('expert_up', (d, f)),
                       ('expert_down', (f, d))):
    kc = _gemm(name, n * k, c, w, wb, ab)
    out.append(dataclasses.replace(kc, weight_bytes=active * c * w * wb))
  if cfg.n_shared_experts:
    out += _dense(cfg, n, wb, ab, 'shared_', f * cfg.n_shared_experts)
  return out


def _attention(cfg, n, wb, ab):
  d, h, hk, hd, kv = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                      cfg.kv_len)
  g = h // hk
  scores = _gemm('scores', n * g, hd, kv + n, 0, ab, groups=hk)
  values = _gemm('values', n * g, kv + n, hd, 0, ab, groups=hk)
  cache = kv * hk * hd * wb
  return [_gemm('qkv', n, d, (h + 2 * hk) * hd, wb, ab),
          dataclasses.replace(scores, weight_bytes=cache),
          dataclasses.replace(values, weight_bytes=cache),
          _gemm('o', n, h * hd, d, wb, ab)]


def _norm(name, cfg, n, wb, ab):
  return KernelCost(name, flops=4.0 * n * cfg.d_model,
                    weight_bytes=cfg.d_model * wb,
                    act_bytes=2.0 * n * cfg.d_model * ab, rows=n)


def _layer(cfg, n, wb, ab):
  ffn = _moe(cfg, n, wb, ab) if cfg.is_moe else _dense(cfg, n, wb, ab)
  return ([_norm('attn_norm', cfg, n, wb, ab)] + _attention(cfg, n, wb, ab)
          + [_norm('ffn_norm', cfg, n, wb, ab)] + ffn)


def kernels(cfg, positions: int) -> list[KernelCost]:
  """The block's kernels at N=positions, ideal counts."""
  wb, ab, n = itemsize(cfg.param_dtype), itemsize(cfg.dtype), positions
  if cfg.module == 'linear':
    return [_gemm('proj', n, cfg.d_model, cfg.d_ff, wb, ab)]
  if cfg.module == 'dense':
    return _dense(cfg, n, wb, ab)
  if cfg.module == 'moe':
    return _moe(cfg, n, wb, ab)
  if cfg.module == 'attention':
    return _attention(cfg, n, wb, ab)
  if cfg.module == 'layer':
    return _layer(cfg, n, wb, ab)
  layer = [dataclasses.replace(kc, count=cfg.n_layers) for kc in _layer(cfg, n, wb, ab)]
  embed = KernelCost('embed', 0.0, weight_bytes=n * cfg.d_model * wb,
                     act_bytes=n * cfg.d_model * ab, rows=n)
  return ([embed] + layer + [_norm('final_norm', cfg, n, wb, ab),
                             _gemm('lm_head', n, cfg.d_model, cfg.vocab, wb, ab)])


def total_flops(cfg, positions: int) -> float:
  return sum(kc.flops * kc.count for kc in kernels(cfg, positions))


def total_bytes(cfg, positions: int) -> float:
  return sum(kc.bytes * kc.count for kc in kernels(cfg, positions))
