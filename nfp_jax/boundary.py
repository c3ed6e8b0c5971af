"""The near-free boundary NFP from a measured (or predicted) ratio curve.

principle.md: N is near-free when T(N) <= (1 + tau) T(1). NFP_tau is the largest
swept N such that every swept n <= N is near-free (first crossing), reported with
the bracket [NFP, next swept N]. With a CI on R(N), a point is `free` if the CI's
upper end <= 1 + tau, `not_free` if its lower end > 1 + tau, else `ambiguous`.
The uncertainty of NFP is the range [nfp_low, nfp_high]: the first crossing of
the CI's upper ends and of its lower ends.

from_rounds works on the rounds themselves (paired ratios T_r(N)/T_r(1)):
nfp from the median ratios, nfp_interval from a joint bootstrap over rounds,
and nfp_status "decided" only when one-sided sign tests with Holm's
correction (family-wise 95%) show every n <= nfp free and the next N not.
"""

import dataclasses
import math
from typing import Sequence
import warnings

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


ALPHA = 0.05  # family-wise error of a decided boundary (Holm across its points)


def _binom_tail(n: int, k: int) -> float:
  """P(Binomial(n, 1/2) >= k)."""
  return sum(math.comb(n, j) for j in range(max(k, 0), n + 1)) / 2**n


def sign_test_p(ratios: np.ndarray, limit: float, free: bool) -> float:
  """One-sided sign test p-value on paired ratios: for free=True that their
  median is <= limit (H0: median > limit), else that it is > limit."""
  ratios = np.asarray(ratios)
  hits = int(np.sum(ratios <= limit)) if free else int(np.sum(ratios > limit))
  return _binom_tail(len(ratios), hits)


def holm(p_values: dict, alpha: float = ALPHA) -> set:
  """Keys whose null hypothesis Holm's step-down procedure rejects at
  family-wise error alpha."""
  rejected = set()
  ordered = sorted(p_values.items(), key=lambda kv: kv[1])
  for i, (key, p) in enumerate(ordered):
    if p > alpha / (len(ordered) - i):
      break
    rejected.add(key)
  return rejected


def ratio_matrix(positions: Sequence[int], times_by_round: dict) -> np.ndarray:
  """[rounds, N] of paired ratios T_r(N)/T_r(1), NaN where N was not timed."""
  base = np.asarray(times_by_round[positions[0]], float)
  return np.stack([np.asarray(times_by_round[n], float) / base
                   for n in positions], axis=1)


def median_ratios(ratios: np.ndarray) -> np.ndarray:
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return np.nanmedian(ratios, axis=-2)


def decide(positions: Sequence[int], ratios: np.ndarray, tau: float,
           alpha: float = ALPHA) -> tuple:
  """(nfp, status, reason, ambiguous N) of one tau from a ratio matrix.

  nfp is the first crossing of the median paired ratios (principle.md). The
  boundary is "decided" when Holm's procedure at family-wise error alpha
  rejects every null of the points involved: each swept 1 < n <= nfp is free
  (one-sided sign test, median ratio <= 1 + tau) and the next swept N is not
  (median ratio > 1 + tau). Otherwise "unresolved", with the N whose test
  failed and their median ratio and rounds.
  """
  positions = list(positions)
  med = median_ratios(ratios)
  nfp = first_crossing(positions, med, tau)
  i = positions.index(nfp)
  involved = {n: True for n in positions[1:i + 1]}
  if i + 1 < len(positions):
    involved[positions[i + 1]] = False
  p = {}
  for n, free in involved.items():
    column = ratios[:, positions.index(n)]
    p[n] = sign_test_p(column[np.isfinite(column)], 1 + tau, free)
  failed = sorted(set(p) - holm(p, alpha))
  if not failed:
    return nfp, 'decided', None, []
  reason = '; '.join(
      f'N={n}: median R {med[positions.index(n)]:.3f} is not '
      f'{"<=" if involved[n] else ">"} {1 + tau:g} at family-wise 95% '
      f'(sign test p={p[n]:.3g}, Holm over {len(p)} points, '
      f'{int(np.isfinite(ratios[:, positions.index(n)]).sum())} rounds)'
      for n in failed)
  return nfp, 'unresolved', reason, failed


def from_rounds(positions: Sequence[int], times_by_round: dict,
                taus: Sequence[float] = TAUS, n_boot: int = 1000,
                seed: int = 0, level: float = 0.90,
                regime_split: int | None = None) -> dict:
  """The boundary of a measured curve per tau, from its rounds.

  Args:
    positions: swept N, positions[0] = 1 the base of every ratio.
    times_by_round: N -> [rounds] seconds, NaN where N was not timed.
    taus: tolerances.
    n_boot, seed, level: the joint bootstrap over rounds of nfp_interval
      (resamples whole rounds, recomputes the first crossing of the whole curve
      per replicate; the interval is its [5th, 95th] percentile at level 0.90).
    regime_split: when the bandwidth sentinel changed regime at this round, a
      boundary is decided only if it is decided, with the same nfp, on the
      rounds before and on the rounds after.

  Returns:
    tau_key -> dict(nfp, nfp_interval, nfp_status, unresolved_reason,
    ambiguous_positions).
  """
  positions = list(positions)
  ratios = ratio_matrix(positions, times_by_round)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(ratios), size=(n_boot, len(ratios)))
  boot = median_ratios(ratios[idx])  # [n_boot, N]
  boot = np.where(np.isfinite(boot), boot, median_ratios(ratios))
  out = {}
  for tau in taus:
    nfp, status, reason, ambiguous = decide(positions, ratios, tau)
    if status == 'decided' and regime_split is not None:
      parts = [decide(positions, part, tau)
               for part in (ratios[:regime_split], ratios[regime_split:])]
      if any(s != 'decided' or n != nfp for n, s, _, _ in parts):
        status = 'unresolved'
        reason = (f'the bandwidth sentinel changed regime at round {regime_split}'
                  ' and the boundary does not hold in both regimes (NFP '
                  + ' and '.join(f'{n} {s}' for n, s, _, _ in parts) + ')')
        ambiguous = sorted({a for part in parts for a in part[3]})
    replicate = [first_crossing(positions, row, tau) for row in boot]
    q = (1 - level) / 2
    interval = [int(np.quantile(replicate, q, method='inverted_cdf')),
                int(np.quantile(replicate, 1 - q, method='inverted_cdf'))]
    out[tau_key(tau)] = dict(nfp=nfp, nfp_interval=interval, nfp_status=status,
                             unresolved_reason=reason,
                             ambiguous_positions=ambiguous)
  return out


def ambiguous_positions(positions: Sequence[int], times_by_round: dict,
                        taus: Sequence[float] = TAUS) -> list:
  """The N that keep some tau's boundary unresolved (no bootstrap; cheap
  enough to ask after every round)."""
  positions = list(positions)
  ratios = ratio_matrix(positions, times_by_round)
  return sorted({n for tau in taus for n in decide(positions, ratios, tau)[3]})
