"""Paired statistics, the decided-or-unresolved boundary and adaptive rounds,
on simulated sweeps with known true curves (no wall-clock timing)."""


import numpy as np
import pytest

from nfp_jax import boundary
from nfp_jax import conditions
from nfp_jax import errors
from nfp_jax import measure

POSITIONS = [1, 2, 3, 4, 6, 8]


def simulate(true_ratio, rounds, rng, sigma=0.03, slow_share=0.1):
  """times_by_round: lognormal noise per call, and slow rounds (x1.5-3) that
  hit every N of the round alike."""
  slow = np.where(rng.random(rounds) < slow_share, rng.uniform(1.5, 3, rounds), 1.0)
  return {n: 1e-3 * r * slow * np.exp(sigma * rng.standard_normal(rounds))
          for n, r in zip(POSITIONS, true_ratio)}


def test_median_ci_ranks_are_the_binomial_ones():
  # n = 15: P(Binom <= 3) = 0.0176 <= 0.025 < P(Binom <= 4) = 0.059.
  assert measure.median_ci_ranks(15) == (3, 11)
  assert measure.median_ci_ranks(3) == (0, 2)


def test_ratio_ci_is_not_clipped_to_the_estimate():
  base = np.ones(15)
  ratio, lo, hi = measure.ratio_ci(np.array([1.0] * 12 + [5.0, 6.0, 7.0]), base)
  assert ratio == 1.0 and lo == 1.0 and hi == 1.0
  # The CI of a skewed sample need not contain a mean-like estimate; ours is
  # the sample median, inside by construction, but ranks decide the ends.
  samples = np.array([0.9, 0.95] + [1.2] * 13)
  assert measure.ratio_ci(samples, base) == (1.2, 1.2, 1.2)


def test_nfp_interval_covers_the_truth_in_90_percent_of_simulations():
  true = [1.0, 1.02, 1.05, 1.07, 1.3, 1.6]  # NFP(0.1) = 4
  rng = np.random.default_rng(1)
  covered = 0
  for i in range(200):
    b = boundary.from_rounds(POSITIONS, simulate(true, 15, rng), [0.1],
                             n_boot=300, seed=i)['0.1']
    low, high = b['nfp_interval']
    covered += low <= 4 <= high
  assert covered >= 180


def test_a_clear_curve_is_decided():
  rng = np.random.default_rng(2)
  b = boundary.from_rounds(POSITIONS, simulate([1, 1.0, 1.01, 1.02, 1.5, 2], 15, rng),
                           [0.1])['0.1']
  assert b['nfp'] == 4 and b['nfp_status'] == 'decided'
  assert b['unresolved_reason'] is None


def test_ambiguous_by_construction_is_never_decided():
  # In half of the rounds N=3 runs a kernel at R=1.0, in the other half one
  # at R=1.3: its median is on neither side of 1 + tau, so no sign test can
  # pass, whatever the noise and slow rounds.
  rng = np.random.default_rng(3)
  for i in range(50):
    times = simulate([1.0, 1.0, 1.0, 1.5, 1.8, 2.0], 40, rng, sigma=0.01)
    times[3] = times[3] * rng.permutation([1.0] * 20 + [1.3] * 20)
    b = boundary.from_rounds(POSITIONS, times, [0.1], n_boot=50, seed=i)['0.1']
    assert b['nfp_status'] == 'unresolved', b
    assert 3 in b['ambiguous_positions']
    assert 'N=3' in b['unresolved_reason']


def test_a_point_on_the_threshold_is_decided_at_most_at_the_error_rate():
  # The true median ratio of N=3 is exactly 1 + tau: a decided answer is a
  # false one, allowed in at most 5% of runs (family-wise); 100 runs, <= 10.
  rng = np.random.default_rng(6)
  decided = sum(
      boundary.from_rounds(POSITIONS, simulate([1.0, 1.0, 1.1, 1.5, 1.8, 2.0], 40,
                                               rng), [0.1], n_boot=10)[
          '0.1']['nfp_status'] == 'decided' for _ in range(100))
  assert decided <= 10


def test_holm_rejects_step_down():
  assert boundary.holm({1: 0.01, 2: 0.02, 3: 0.04}) == {1, 2, 3}
  assert boundary.holm({1: 0.01, 2: 0.03, 3: 0.04}) == {1}
  assert boundary.holm({1: 0.2}) == set()


def test_a_regime_change_unresolves_a_boundary_that_moves():
  rng = np.random.default_rng(4)
  a = simulate([1, 1.0, 1.01, 1.02, 1.5, 2], 20, rng, slow_share=0)
  b = simulate([1, 1.3, 1.4, 1.5, 1.6, 2], 20, rng, slow_share=0)
  times = {n: np.concatenate([a[n], b[n]]) for n in POSITIONS}
  assert boundary.from_rounds(POSITIONS, times, [0.1], regime_split=20)[
      '0.1']['nfp_status'] == 'unresolved'
  same = {n: np.concatenate([a[n], a[n]]) for n in POSITIONS}
  assert boundary.from_rounds(POSITIONS, same, [0.1], regime_split=20)[
      '0.1']['nfp_status'] == 'decided'


class FakeClock:
  """Every reading advances time by `step` seconds; a call reads it twice."""

  def __init__(self, step=0.01):
    self.now, self.step = 0.0, step

  def __call__(self):
    self.now += self.step
    return self.now


def test_adaptive_rounds_stop_at_the_budget_and_time_only_the_ambiguous_n():
  calls = {n: (lambda: None) for n in POSITIONS}
  asked = []

  def ambiguous(so_far):
    asked.append(len(so_far[1]))
    return [3]

  clock = FakeClock()
  plan = measure.RoundPlan(min_rounds=5, max_rounds=1000, time_budget_s=2.0)
  samples = measure.time_rounds(calls, plan, ambiguous=ambiguous, warmup=0,
                                clock=clock)
  rounds = len(samples[1])
  assert 5 < rounds < 1000
  assert clock.now < 2.0 + 0.2  # stopped within one round of the budget
  timed = {n: int(np.isfinite(samples[n]).sum()) for n in POSITIONS}
  assert timed[1] == timed[3] == rounds
  assert all(timed[n] == 5 for n in POSITIONS if n not in (1, 3))
  assert asked[0] == 5


def test_adaptive_rounds_stop_when_nothing_is_ambiguous():
  calls = {n: (lambda: None) for n in POSITIONS}
  samples = measure.time_rounds(calls, measure.RoundPlan(5, 100, 1e9),
                                ambiguous=lambda _: [], warmup=0, clock=FakeClock())
  assert len(samples[1]) == 5


def test_a_fixed_plan_runs_exactly_its_rounds():
  calls = {n: (lambda: None) for n in POSITIONS}
  samples = measure.time_rounds(calls, measure.RoundPlan.fixed(7),
                                ambiguous=lambda _: [2], warmup=0, clock=FakeClock())
  assert all(len(s) == 7 and np.isfinite(s).all() for s in samples.values())


@pytest.mark.parametrize('plan, words', [
    (measure.RoundPlan(15, 200, 0.0), 'time budget'),
    (measure.RoundPlan(20, 10, 5.0), 'exceeds'),
    (measure.RoundPlan(2, 10, 5.0), 'At least 3'),
])
def test_bad_round_plans_are_refused(plan, words):
  with pytest.raises(errors.ConfigError, match=words):
    plan.check()


def test_pettitt_finds_a_step_and_not_noise():
  rng = np.random.default_rng(5)
  noise = 10 + 0.2 * rng.standard_normal(40)
  assert conditions.bandwidth_summary(noise)['regime_change_round'] is None
  step = np.concatenate([noise[:20], noise[20:] + 3])
  assert conditions.bandwidth_summary(step)['regime_change_round'] == 20


def test_conditions_name_the_cpu():
  c = conditions.Monitor()
  c.round_done()
  s = c.summary(xla_threads=2)
  assert s['cores'] >= 1 and isinstance(s['cpu_model'], str)
  assert set(s['isa_flags']) <= set(conditions.ISA_FLAGS)
  assert 0 <= s['interfered_share'] <= 1 and len(s['rounds']) == 1


def test_overhead_chain_kernels_are_counted_in_the_compiled_hlo():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from nfp_jax import hardware, hlo  # pylint: disable=import-outside-toplevel
  tiny = jnp.ones((8, 8), jnp.float32)
  counts = {}
  for k in (1, 33):
    text = jax.jit(hardware._chain_of_dots(k)).lower(tiny, tiny).compile().as_text()
    counts[k] = hlo.count_kernels(text)
    # Real HLO: at least one kernel per dot, and no more than dot + tanh each.
    assert k <= counts[k] <= 2 * k + 2
  assert counts[33] > counts[1]
  t, kernels = hardware._median_time_and_kernels(hardware._chain_of_dots(4),
                                                 (tiny, tiny), 1)
  assert kernels == hlo.count_kernels(
      jax.jit(hardware._chain_of_dots(4)).lower(tiny, tiny).compile().as_text())
