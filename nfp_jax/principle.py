"""Predictors of the near-free boundary, from weakest to the principle.

This module reads kernel costs and hardware numbers, never a clock.

1. Idle-compute baseline (principle.md): at N=1 the block is memory-bound and the
   compute left idle is peak * bytes(1)/BW - flops(1); extra positions are taken
   as free until their FLOPs fill it:
     N_idle = max N with flops(N) <= (1 + tau) * peak * bytes(1) / BW.
2. Resource slack: T_res(N) = sum_k max(bytes_k(N)/BW, flops_k(N)/peak) over the
   block's ideal kernels (costs.py), with the bytes that grow with N counted.
3. The principle: T_pred(N) = sum over the kernels XLA compiled at that N, each
   priced from its own kind and tile grid (GPU: pricing_gpu.py; CPU: the GEMM
   kind's reference curve from the granularity probe at the kernel's rows: a
   fixed part, and a part scaled to its size),
   plus the fixed costs of a call (call floor, per-kernel overhead) and of fresh
   buffers (page faults, where the allocator maps large blocks anew). Every rate comes from the spec table or from separate
   microbenchmarks; nothing is fitted to the curve being predicted.
"""

import dataclasses
import math
from typing import Callable, Iterable

import numpy as np

from nfp_jax import boundary
from nfp_jax import costs

_MAX_POSITIONS = 1 << 30


def n_idle(flops_at: Callable[[int], float], bytes_one: float, peak_flops: float,
           bandwidth: float, tau: float) -> int:
  """Largest N whose FLOPs fit in (1+tau) times the memory time of N=1.

  flops_at must be non-decreasing in N. Returns 1 when even N=1 does not fit
  (a block that is compute-bound at N=1 has no idle compute).
  """
  budget = (1 + tau) * peak_flops * bytes_one / bandwidth
  if flops_at(1) > budget:
    return 1
  lo, hi = 1, 2
  while hi < _MAX_POSITIONS and flops_at(hi) <= budget:
    lo, hi = hi, hi * 2
  if hi >= _MAX_POSITIONS:
    return _MAX_POSITIONS
  while hi - lo > 1:  # flops_at(lo) fits, flops_at(hi) does not
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if flops_at(mid) <= budget else (lo, mid)
  return lo


def idle_compute(cfg, balance, taus: Iterable[float] = boundary.TAUS) -> dict:
  """N_idle per tau (keys as boundary.tau_key) for a block on a balance."""
  bytes_one = costs.total_bytes(cfg, 1)
  flops_at = lambda n: costs.total_flops(cfg, n)
  return {boundary.tau_key(t): n_idle(flops_at, bytes_one, balance.peak_flops,
                                      balance.bandwidth, t) for t in taus}


def t1_roofline_fraction(cfg, balance, t1_s: float) -> float:
  """(bytes(1)/BW) / T(1): how close the N=1 forward runs to its bandwidth bound.

  A low value means T(1) is slow for reasons other than memory traffic, and a
  flat curve may then be near-free only because N=1 is inefficient.
  """
  return costs.total_bytes(cfg, 1) / balance.bandwidth / t1_s


# ----------------------------------------------------------------------------
# 2. Resource slack: the exact roofline of the block's ideal kernels.

def resource_time(cfg, positions: int, balance) -> float:
  """T_res(N) = sum over kernels of max(bytes_k(N)/BW, flops_k(N)/peak)."""
  return sum(kc.count * max(kc.bytes / balance.bandwidth,
                            kc.flops / balance.peak_flops)
             for kc in costs.kernels(cfg, positions))


# ----------------------------------------------------------------------------
# 3. The principle: resource slack + kernel granularity, per compiled kernel.

MECHANISMS = ('resource', 'tile_boundary', 'waves', 'kernel_switch', 'overhead')
GEMM_KINDS = ('triton_gemm', 'cublas', 'cpu_ynn', 'cpu_dot', 'cpu_gemv')

_ELEMENT_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2,
                  'bf16': 2, 's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8,
                  'f64': 8, 'c64': 8, 'c128': 16}
_HLO_DTYPE = {'f32': 'float32', 'bf16': 'bfloat16', 'f16': 'float16'}


def shape_bytes(shape) -> int:
  """Bytes of an HLO shape (a tuple of shapes sums); 0 for None or tokens."""
  if shape is None:
    return 0
  if isinstance(shape, (tuple, list)):
    return sum(shape_bytes(s) for s in shape)
  size = 1
  for d in shape.dims:
    size *= d
  return size * _ELEMENT_BYTES.get(shape.dtype, 1 if shape.dtype.startswith('f8') else 4)


@dataclasses.dataclass(frozen=True)
class KernelTime:
  """One compiled kernel at one N, priced. Times in seconds."""
  name: str
  source_op: str | None
  kind: str
  bytes: float  # moved to or from memory
  flops: float  # as computed, padded to tiles where tiles are known
  t_memory: float
  t_compute: float
  t_s: float  # max(t_memory, t_compute)
  position_tiles: int | None = None  # ceil(M / tile along positions)
  waves: int | None = None
  tiling: tuple = ()  # (tile along positions, along features, split-K) if known


def _dot_sizes(kernel) -> tuple:
  """(rows M along positions, features F, contraction K per split, batch,
  splits) of a GEMM kernel, from its output and its dot's dimension numbers."""
  out = kernel.output_shape
  if isinstance(out, (tuple, list)):
    out = out[0]
  dims = list(out.dims)
  rows = dims[kernel.positions_dim] if kernel.positions_dim is not None else 1
  features = dims[kernel.features_dim] if kernel.features_dim is not None else 1
  splits = dims[kernel.split_k_dim] if kernel.split_k_dim is not None else 1
  numbers = kernel.dot_dimension_numbers or {}
  contraction = 1
  for d in numbers.get('lhs_contracting_dims', ()):
    contraction *= kernel.dot_lhs.dims[d]
  batch = 1
  for i, d in enumerate(dims):
    if i not in (kernel.positions_dim, kernel.features_dim, kernel.split_k_dim):
      batch *= d
  return rows, features, contraction, batch, splits


def _weight_bytes(kernel) -> int:
  """Bytes of the GEMM operand that does not carry the positions (the weights)."""
  side = kernel.dot_rhs if kernel.positions_operand != 'rhs' else kernel.dot_lhs
  return shape_bytes(side)


def kernel_bytes(kernel) -> int:
  """Bytes a kernel moves: operands read and output written.

  GEMMs and reductions read their operands whole. Other fusions (elementwise,
  gathers, slices, transposes) read at most as much of an operand as they
  write, so a gather of a few experts out of all of them counts the experts
  gathered, not the whole weight array.
  """
  out = shape_bytes(kernel.output_shape)
  whole = kernel.kind in GEMM_KINDS or kernel.kind == 'gpu_gemv_reduce' or (
      kernel.fusion_kind in ('kInput', 'kReduction'))
  read = sum(shape_bytes(s) if whole else min(shape_bytes(s), out)
             for s in kernel.operand_shapes)
  return read + out


def price_streamed(kernel, balance) -> KernelTime:
  """A kernel that is not a GEMM (elementwise, reduction, gather, softmax,
  conversion): its bytes at the memory bandwidth."""
  moved = kernel_bytes(kernel)
  t_mem = moved / balance.bandwidth
  return KernelTime(kernel.name, kernel.source_op, kernel.kind, moved, 0.0,
                    t_mem, 0.0, t_mem)


def _at_rows(ref: dict, kind: str, rows: int, call_floor_s: float) -> float:
  """A reference curve's time of `kind` at `rows`, less the call floor.

  Between swept N the time is interpolated, beyond them extrapolated along the
  last two points; where the reference ran another kind at that N (the GEMV
  at N=1), its nearest N of this kind is used.
  """
  points = [(n, t) for n, t, k in zip(ref['positions'], ref['t_median_s'],
                                      ref['kinds']) if k == kind]
  xs = [n for n, _ in points]
  ys = [max(t - call_floor_s, 0.0) for _, t in points]
  if rows <= xs[0] or len(xs) == 1:
    return ys[0]
  if rows >= xs[-1]:
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return max(ys[-1] + slope * (rows - xs[-1]), 0.0)
  return float(np.interp(rows, xs, ys))


def fixed_part(refs: list, kind: str, rows: int, call_floor_s: float = 0.0
               ) -> float:
  """The part of a reference GEMM's time at `rows` that does not grow with its
  size K*F (dispatch, packing setup, threading), from the probe's own shapes.

  The line t = fixed + slope * K*F through the two smallest reference sizes of
  the kind at this N (the smallest shapes run from the caches, where time per
  weight is the same, so their difference is the size-proportional part):
  its intercept, kept within [0, the smallest reference's time]. 0 with fewer
  than two sizes.
  """
  sizes = {}
  for ref in refs:
    size = ref['contraction'] * ref['features']
    sizes.setdefault(size, []).append(_at_rows(ref, kind, rows, call_floor_s))
  if len(sizes) < 2:
    return 0.0
  (s0, t0), (s1, t1) = sorted((s, float(np.median(t))) for s, t in sizes.items())[:2]
  slope = (t1 - t0) / (s1 - s0)
  return min(max(t0 - slope * s0, 0.0), t0)


def reference_time(probe: dict | None, kind: str, dtype: str, rows: int,
                   contraction: int, features: int,
                   call_floor_s: float = 0.0, batch: int = 1) -> float | None:
  """Time of one [rows, K] x [K, F] GEMM of a CPU kernel kind, from the probe.

  The probe timed plain GEMMs of this kind on fixed reference shapes at every
  N. At a given N the reference closest in shape (K and F on a log scale:
  square or thin, in cache or streaming from memory), less the call floor, is
  split into a fixed part (fixed_part, fit on the probe's shapes at that N)
  and the rest, which scales with K*F to this kernel: a small GEMM keeps its
  dispatch cost, a large one is priced by its size. A batched kernel (`batch`
  GEMMs in one call: heads, split-K) pays the fixed part once and the rest
  `batch` times. None if the probe never ran this kind.
  """
  refs = [r for r in (probe or {}).get('references', []) if kind in r['kinds']]
  refs = [r for r in refs if r['dtype'] == dtype] or refs
  if not refs:
    return None
  ref = min(refs, key=lambda r: math.hypot(
      math.log(r['contraction'] / max(contraction, 1)),
      math.log(r['features'] / max(features, 1))))
  t = _at_rows(ref, kind, rows, call_floor_s)
  fixed = min(fixed_part(refs, kind, rows, call_floor_s), t)
  return fixed + (t - fixed) * batch * contraction * features / (
      ref['contraction'] * ref['features'])


def price_cpu(kernel, balance, probe: dict | None) -> KernelTime:
  """A GEMM kernel on XLA:CPU: its batch of GEMMs of one kind in one call, timed
  from the granularity probe's reference curve of that kind at this kernel's
  rows (reference_time). Without a probe of the kind: roofline on the balance."""
  moved = kernel_bytes(kernel)
  rows, features, contraction, batch, splits = _dot_sizes(kernel)
  flops = 2.0 * rows * features * contraction * batch * splits
  dtype = _HLO_DTYPE.get(kernel.dot_rhs.dtype if kernel.dot_rhs else 'f32', 'float32')
  t_mem, t_comp = moved / balance.bandwidth, flops / balance.peak_flops
  t_ref = reference_time(probe, kernel.kind, dtype, rows, contraction, features,
                         balance.call_floor_s, batch * splits)
  t = max(t_mem, t_comp) if t_ref is None else t_ref
  return KernelTime(kernel.name, kernel.source_op, kernel.kind, moved, flops,
                    t_mem, t_comp, t)


@dataclasses.dataclass(frozen=True)
class CurvePoint:
  """T_pred at one N: the kernels, and the fixed costs of a call."""
  positions: int
  kernels: tuple  # KernelTime
  floor_s: float  # call floor + per-kernel overheads
  alloc_s: float  # fresh (page-faulted) buffers
  t_s: float


def fresh_buffer_time(memory: dict | None, balance) -> float:
  """Time to fault in a call's temp and output buffers when the allocator hands
  them out as new pages on every call (at or above the measured threshold, e.g.
  glibc's mmap of blocks above 32 MiB), at the measured page-fault speed.

  XLA:CPU allocates the temps of a call as one block (memory_analysis's
  temp_size_in_bytes), so it is the sum of the temps that counts: three 15 MB
  converted weights fault in as one 45 MB block.
  """
  if not memory or not balance.fault_bandwidth or not balance.fresh_threshold_bytes:
    return 0.0
  sizes = (memory.get('temp_size_in_bytes', 0), memory.get('output_size_in_bytes', 0))
  return sum(s for s in sizes if s >= balance.fresh_threshold_bytes) / (
      balance.fault_bandwidth)


def price_module(kernels, positions: int, balance, *, target,
                 probe: dict | None = None,
                 memory: dict | None = None, autotune=None) -> CurvePoint:
  """T_pred of one compiled forward on `target` (targets.Target): its kernels
  plus the fixed costs. GPU targets are priced by pricing_gpu (autotune: its
  re-tiling function for the model-autotune tiling source, else None), TPU
  targets by pricing_tpu."""
  if target.platform == 'tpu':
    from nfp_jax import pricing_tpu  # pylint: disable=g-import-not-at-top
    return pricing_tpu.price_module(kernels, positions, balance, target=target)
  if target.platform == 'gpu':
    from nfp_jax import pricing_gpu  # pylint: disable=g-import-not-at-top
    return pricing_gpu.price_module(kernels, positions, target.spec,
                                    autotune=autotune)
  def price(kernel):
    if kernel.kind not in GEMM_KINDS or kernel.dot_dimension_numbers is None:
      return price_streamed(kernel, balance)
    return price_cpu(kernel, balance, probe)
  priced = tuple(price(k) for k in kernels)
  floor = balance.call_floor_s + len(priced) * balance.kernel_overhead_s
  alloc = fresh_buffer_time(memory, balance)
  return CurvePoint(positions, priced, floor, alloc,
                    floor + alloc + sum(k.t_s for k in priced))


def _by_source(point: CurvePoint) -> dict:
  groups = {}
  for k in point.kernels:
    groups.setdefault(k.source_op or 'other', []).append(k)
  return groups


def binding_mechanism(points: list, nfp: int, next_positions: int | None
                      ) -> str | None:
  """What ends the near-free range of a predicted curve.

  overhead: fixed costs (call floor, per-kernel overheads, fresh buffers) are at
    least half of T_pred(1), so growth is absorbed by them;
  otherwise the source op whose time grows most from NFP to the next swept N
  decides: its kernels changed kind or tiling (kernel_switch: another kernel, a
  new tile, split-K on or off), its wave count grew (waves), its count of
  position-tiles grew (tile_boundary), or none of these: the same kernels did
  more work or moved more bytes (resource). None when the curve never crosses.
  """
  if next_positions is None:
    return None
  by_n = {p.positions: p for p in points}
  first = points[0]
  if (first.floor_s + first.alloc_s) >= 0.5 * first.t_s:
    return 'overhead'
  before, after = _by_source(by_n[nfp]), _by_source(by_n[next_positions])
  growth = {op: sum(k.t_s for k in after[op]) - sum(k.t_s for k in before.get(op, ()))
            for op in after}
  if by_n[next_positions].alloc_s - by_n[nfp].alloc_s > max(growth.values(), default=0):
    return 'resource'
  if not growth:
    return 'resource'
  op = max(growth, key=growth.get)
  old, new = before.get(op, ()), after[op]
  if sorted((k.kind, k.tiling) for k in old) != sorted((k.kind, k.tiling) for k in new):
    return 'kernel_switch'
  if max((k.waves or 0) for k in new) > max((k.waves or 0) for k in old):
    return 'waves'
  if max((k.position_tiles or 0) for k in new) > max(
      (k.position_tiles or 0) for k in old):
    return 'tile_boundary'
  return 'resource'
