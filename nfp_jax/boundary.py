"""The near-free boundary NFP from a measured (or predicted) ratio curve.

principle.md: N is near-free when T(N) <= (1 + tau) T(1). NFP_tau is the largest
swept N such that every swept n <= N is near-free (first crossing), reported with
the bracket [NFP, next swept N]. With a CI on R(N), a point is `free` if the CI's
upper end <= 1 + tau, `not_free` if its lower end > 1 + tau, else `ambiguous`.
The uncertainty of NFP is the range [nfp_low, nfp_high]: the first crossing of
the CI's upper ends and of its lower ends.
"""

import dataclasses
from typing import Sequence

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
