"""Predictors of the near-free boundary, from weakest to the principle.

This module reads kernel costs and hardware numbers, never a clock.

1. Idle-compute baseline (principle.md): at N=1 the block is memory-bound and the
   compute left idle is peak * bytes(1)/BW - flops(1); extra positions are taken
   as free until their FLOPs fill it:
     N_idle = max N with flops(N) <= (1 + tau) * peak * bytes(1) / BW.
"""

from typing import Callable, Iterable

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
