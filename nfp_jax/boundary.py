"""The near-free boundary NFP from a measured (or predicted) ratio curve.

principle.md: N is near-free when T(N) <= (1 + tau) T(1). NFP_tau is the largest
swept N such that every swept n <= N is near-free (first crossing), reported with
the bracket [NFP, next swept N]. With a CI on R(N), a point is `free` if the CI's
upper end <= 1 + tau, `not_free` if its lower end > 1 + tau, else `ambiguous`.
The uncertainty of NFP is the range [nfp_low, nfp_high]: the first crossing of
the CI's upper ends and of its lower ends. R(N) and its CI from rounds
(ratio_ci, median_ci) live here too, beside the decision that reads them.
"""

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from nfp_jax import errors

TAUS = (0.05, 0.1, 0.2)
DEFAULT_POSITIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def check_positions(positions: Sequence[int]) -> list[int]:
  """The swept N as a list that starts at 1 (added if missing): every ratio
  is relative to T(1). errors.ConfigError unless strictly increasing and >= 1."""
  positions = list(positions)
  if not positions:
    raise errors.ConfigError('The list of positions is empty.')
  if min(positions) <= 0:
    raise errors.ConfigError(f'Every position must be at least 1, got '
                             f'{min(positions)}.')
  if any(b <= a for a, b in zip(positions, positions[1:])):
    raise errors.ConfigError(f'Positions must be strictly increasing, got '
                             f'{",".join(map(str, positions))}.')
  return positions if positions[0] == 1 else [1] + positions


def taus(tolerance: float) -> tuple:
  """The tolerances a run reports: TAUS and the one asked for, which must be
  in (0, 1) (errors.ConfigError otherwise)."""
  if not 0 < tolerance < 1:
    raise errors.ConfigError(f'The tolerance must be in (0, 1), got {tolerance}.')
  return tuple(sorted(set(TAUS) | {tolerance}))


def tau_key(tau: float) -> str:
  """The JSON key of a tolerance: 0.1 -> "0.1"."""
  return repr(float(tau))


def verdict(lo: float, hi: float, tau: float) -> str:
  if hi <= 1 + tau:
    return 'free'
  if lo > 1 + tau:
    return 'not_free'
  return 'ambiguous'


def first_crossing(positions: Sequence[int], ratio: Sequence[float],
                   tau: float) -> int:
  """Largest swept N with every ratio up to it <= 1 + tau (positions[0] at least)."""
  nfp = positions[0]
  for n, r in zip(positions, ratio):
    if r > 1 + tau:
      break
    nfp = n
  return nfp


@dataclasses.dataclass(frozen=True)
class Boundary:
  tau: float
  nfp: int
  bracket: tuple  # (nfp, next swept N or None when nothing crossed)
  nfp_low: int
  nfp_high: int
  verdicts: tuple  # per swept N: free | not_free | ambiguous

  @property
  def certain(self) -> bool:
    return self.nfp_low == self.nfp_high


def find(positions: Sequence[int], ratio: Sequence[float],
         ratio_lo: Sequence[float] | None = None,
         ratio_hi: Sequence[float] | None = None, tau: float = 0.1) -> Boundary:
  """NFP_tau of a curve; without a CI the curve is taken as exact."""
  positions = list(positions)
  ratio_lo = list(ratio if ratio_lo is None else ratio_lo)
  ratio_hi = list(ratio if ratio_hi is None else ratio_hi)
  nfp = first_crossing(positions, ratio, tau)
  i = positions.index(nfp)
  nxt = positions[i + 1] if i + 1 < len(positions) else None
  return Boundary(
      tau=tau, nfp=nfp, bracket=(nfp, nxt),
      nfp_low=first_crossing(positions, ratio_hi, tau),
      nfp_high=first_crossing(positions, ratio_lo, tau),
      verdicts=tuple(verdict(lo, hi, tau) for lo, hi in zip(ratio_lo, ratio_hi)))


# ----------------------------------------------------------------------------
# The boundary from timed rounds: decided, or unresolved with its reason.

FAMILY_ALPHA = 0.05  # family-wise error of a `decided` boundary (Holm)


def sign_test_p(ratios, threshold: float, free: bool) -> float:
  """One-sided exact sign test of the median of paired ratios against 1 + tau.

  free=True: H1 "median <= threshold" (the point is free); p = P(B <= k) with k
  the rounds above the threshold, B ~ Binomial(m, 1/2). free=False: H1 "median
  > threshold" (not free); k counts the rounds at or below it.
  """
  r = np.asarray(ratios, float)
  r = r[np.isfinite(r)]
  m = len(r)
  if m == 0:
    return 1.0
  k = int(np.sum(r > threshold)) if free else int(np.sum(r <= threshold))
  return float(sum(math.comb(m, i) for i in range(k + 1)) / 2**m)


def holm(p_values: Mapping, alpha: float = FAMILY_ALPHA) -> dict:
  """key -> rejected? under Holm's step-down at family-wise level alpha."""
  ordered = sorted(p_values.items(), key=lambda kv: kv[1])
  rejected, still = {}, True
  for i, (key, p) in enumerate(ordered):
    still = still and p <= alpha / (len(ordered) - i)
    rejected[key] = still
  return rejected


@dataclasses.dataclass(frozen=True)
class Decision:
  """NFP of one tau from rounds: the point estimate (first crossing of the
  median paired ratios), its bootstrap interval, and whether it is decided."""
  tau: float
  nfp: int
  interval: tuple  # (low, high): 5th / 95th percentile of bootstrap NFPs
  status: str  # 'decided' | 'unresolved'
  reason: str | None  # why unresolved: the ambiguous N, their R, CI and p
  ambiguous: tuple  # the N whose test failed (where more rounds would help)
  p_values: dict  # N -> one-sided sign-test p of its claimed side


def ratio_matrix(positions: Sequence[int], samples: Mapping) -> np.ndarray:
  """[len(positions), rounds] of T_r(N) / T_r(positions[0]); NaN where a round
  did not time N (adaptive rounds time only the N still in question)."""
  base = np.asarray(samples[positions[0]], float)
  return np.stack([np.asarray(samples[n], float) / base for n in positions])


def _first_crossing_rows(positions, medians: np.ndarray, tau: float) -> np.ndarray:
  """First crossing of each row of [replicates, len(positions)] medians."""
  above = medians > 1 + tau
  above[:, 0] = False  # R(1) = 1 by definition
  first_above = np.where(above.any(axis=1), above.argmax(axis=1), len(positions))
  return np.asarray(positions)[first_above - 1]


def bootstrap_nfp(positions, ratios: np.ndarray, tau: float, n_boot: int = 1000,
                  seed: int = 0) -> np.ndarray:
  """NFP of each replicate of a joint bootstrap over rounds: one resampling of
  the rounds per replicate, the whole curve's first crossing recomputed."""
  rounds = ratios.shape[1]
  idx = np.random.default_rng(seed).integers(0, rounds, size=(n_boot, rounds))
  with np.errstate(all='ignore'):
    import warnings  # pylint: disable=g-import-not-at-top
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)  # a replicate without N
      medians = np.nanmedian(ratios[:, idx], axis=2).T  # [n_boot, positions]
  medians = np.where(np.isnan(medians), np.inf, medians)  # untimed: not free
  medians[:, 0] = 1.0
  return _first_crossing_rows(positions, medians, tau)


def decide(positions: Sequence[int], samples: Mapping, tau: float,
           level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> Decision:
  """NFP_tau of timed rounds, decided or unresolved.

  `decided` needs, at family-wise confidence 95% (Holm over the points
  involved, at 2.5% since each point's side is chosen from its data): every
  swept 1 < n <= NFP free (sign test of the paired ratios' median <= 1 + tau)
  and the next swept N not free (median > 1 + tau). Else
  `unresolved`, naming the N whose test failed. The interval is the 5th-95th
  percentile range of the NFPs of a joint bootstrap over rounds.
  """
  positions = list(positions)
  ratios = ratio_matrix(positions, samples)
  medians = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.inf
                      for r in ratios])
  medians[0] = 1.0
  nfp = int(_first_crossing_rows(positions, medians[None, :], tau)[0])
  i = positions.index(nfp)
  # n_boot=0: only the status (the adaptive loop asks which N are undecided).
  replicates = (bootstrap_nfp(positions, ratios, tau, n_boot, seed) if n_boot
                else np.array([nfp]))
  low, high = (int(np.percentile(replicates, 5, method='lower')),
               int(np.percentile(replicates, 95, method='higher')))
  claims = {n: True for n in positions[1:i + 1]}
  if i + 1 < len(positions):
    claims[positions[i + 1]] = False
  p_values = {n: sign_test_p(ratios[positions.index(n)], 1 + tau, free)
              for n, free in claims.items()}
  # The side each point is tested for is the side its median fell on, so a
  # point whose true R is 1 + tau could be wrongly decided either way: Holm
  # runs at FAMILY_ALPHA / 2, which keeps the chance of a wrong `decided`
  # within FAMILY_ALPHA (at FAMILY_ALPHA it reached about twice that).
  rejected = holm(p_values, FAMILY_ALPHA / 2)
  failed = tuple(n for n in claims if not rejected[n])
  reason = None
  if failed:
    parts = []
    for n in failed:
      r = ratios[positions.index(n)]
      med, lo, hi = median_ci(r, level)
      parts.append(f"N={n} {'free' if claims[n] else 'not free'}? R={med:.3f} "
                   f"[{lo:.3f}, {hi:.3f}] vs {1 + tau:g}, p={p_values[n]:.2g} "
                   f"over {int(np.isfinite(r).sum())} rounds")
    reason = ('not significant at family-wise 95% (Holm, sign tests): '
              + '; '.join(parts))
  return Decision(tau=tau, nfp=nfp, interval=(low, high),
                  status='unresolved' if failed else 'decided', reason=reason,
                  ambiguous=failed, p_values=p_values)


def median_ci(values, level: float = 0.95) -> tuple[float, float, float]:
  """(median, low, high) of `values` (NaNs dropped), with the distribution-free
  order-statistic interval for a median: [x_(j), x_(k)] with ranks from
  Binomial(n, 1/2) so that P(x_(j) <= median < x_(k)) >= level. It assumes only
  independent rounds, not a shape of the noise; it is never clipped to hold the
  point estimate (it always does for a median). With fewer than 6 values no
  rank pair reaches 95%: the interval is then [min, max] (coverage 1 - 2^(1-n)).
  """
  x = np.sort(np.asarray(values, dtype=float))
  x = x[np.isfinite(x)]
  n = len(x)
  if n == 0:
    return float('nan'), float('nan'), float('nan')
  median = float(np.median(x))
  # Largest j with P(B < j) <= alpha/2, B ~ Binomial(n, 1/2): ranks j+1 .. n-j.
  alpha = 1 - level
  cdf, j = 0.0, 0
  while j < n // 2:
    cdf_next = cdf + math.comb(n, j) / 2**n
    if cdf_next > alpha / 2:
      break
    cdf, j = cdf_next, j + 1
  low = x[max(j - 1, 0)] if j else x[0]
  high = x[n - j] if j else x[-1]
  return median, float(low), float(high)


def paired_ratios(samples, base) -> np.ndarray:
  """Per-round ratios T_r(N) / T_r(1) over the rounds that timed both."""
  samples, base = np.asarray(samples, float), np.asarray(base, float)
  ok = np.isfinite(samples) & np.isfinite(base)
  return samples[ok] / base[ok]


def ratio_ci(samples, base, level: float = 0.95) -> tuple[float, float, float]:
  """R(N) and its CI from rounds: the median of the paired per-round ratios
  T_r(N)/T_r(1) (a slow round that slows every N alike cancels in its ratio)
  with the order-statistic interval of that median (median_ci)."""
  return median_ci(paired_ratios(samples, base), level)
