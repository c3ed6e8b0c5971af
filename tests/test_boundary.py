"""NFP detection on synthetic curves."""

import numpy as np

from nfp_jax import boundary

POSITIONS = [1, 2, 4, 8, 16, 32, 64]


def test_flat_curve_is_free_everywhere():
  b = boundary.find(POSITIONS, [1.0] * 7, tau=0.1)
  assert b.nfp == 64 and b.bracket == (64, None)
  assert b.certain and set(b.verdicts) == {'free'}


def test_one_step():
  ratio = [1, 1.02, 1.04, 1.05, 1.5, 1.6, 2.0]
  b = boundary.find(POSITIONS, ratio, tau=0.1)
  assert (b.nfp, b.bracket) == (8, (8, 16))
  assert boundary.find(POSITIONS, ratio, tau=0.05).nfp == 8
  assert boundary.find(POSITIONS, ratio, tau=0.03).nfp == 2


def test_first_crossing_ignores_later_dips():
  ratio = [1, 1.3, 1.05, 1.05, 1.05, 1.05, 1.05]
  assert boundary.find(POSITIONS, ratio, tau=0.1).nfp == 1


def test_noisy_curve_with_bootstrap_ci():
  rng = np.random.default_rng(0)
  base = 1e-3 * (1 + 0.02 * rng.standard_normal(40))
  curve = {1: 1.0, 2: 1.01, 4: 1.03, 8: 1.4, 16: 2.0}
  samples = {n: base * r * (1 + 0.02 * rng.standard_normal(40))
             for n, r in curve.items()}
  stats = [boundary.ratio_ci(samples[n], samples[1]) for n in curve]
  b = boundary.find(list(curve), *zip(*stats), tau=0.1)
  assert b.nfp == 4 and b.certain
  assert b.verdicts == ('free', 'free', 'free', 'not_free', 'not_free')


def test_ambiguous_point_widens_the_range():
  ratio = [1.0, 1.05, 1.09, 1.3]
  lo = [1.0, 1.0, 1.02, 1.25]
  hi = [1.0, 1.08, 1.15, 1.35]
  b = boundary.find([1, 2, 4, 8], ratio, lo, hi, tau=0.1)
  assert b.nfp == 4
  assert (b.nfp_low, b.nfp_high) == (2, 4)
  assert b.verdicts == ('free', 'free', 'ambiguous', 'not_free')
  assert not b.certain


def test_ratio_ci_is_paired_by_round():
  # Every round is slower or faster as a whole: pairing cancels it.
  rounds = np.linspace(1.0, 3.0, 30)
  lo_hi = boundary.ratio_ci(2.0 * rounds, rounds)
  assert lo_hi == (2.0, 2.0, 2.0)


def test_tau_key():
  assert boundary.tau_key(0.1) == '0.1' and boundary.tau_key(0.05) == '0.05'
