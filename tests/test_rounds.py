"""The measured boundary on simulated rounds with known truth: the paired
median and its order-statistic CI, the bootstrap NFP interval, decided vs
unresolved, adaptive rounds on a fake clock, conditions and regime changes."""

import os
import numpy as np
import pytest

from nfp_jax import boundary
from nfp_jax import conditions
from nfp_jax import errors
from nfp_jax import measure
from nfp_jax import repeatability
from tests import cli

POSITIONS = [1, 2, 3, 4, 6, 8, 12, 16]


def simulate(true_ratio, rounds, rng, sigma=0.05, slow_share=0.1):
  """Seconds per N and round: T(1) = 1 ms times the true R(N), multiplicative
  lognormal noise per sample, and occasional slow rounds (x1.5 on every N)."""
  slow = np.where(rng.random(rounds) < slow_share, 1.5, 1.0)
  return {n: 1e-3 * r * slow * rng.lognormal(0.0, sigma, rounds)
          for n, r in zip(POSITIONS, true_ratio)}


def test_median_ci_ranks():
  # n = 30: P(B <= 9) = 0.021 <= 0.025 < P(B <= 10): ranks 10 and 21.
  assert boundary.median_ci(np.arange(1, 31)) == (15.5, 10.0, 21.0)
  # Fewer than 6 values: [min, max]; never clipped, NaNs dropped.
  assert boundary.median_ci([3.0, 1.0, np.nan, 2.0]) == (2.0, 1.0, 3.0)


def test_paired_ratio_cancels_slow_rounds():
  rounds = np.linspace(1.0, 3.0, 30)
  assert boundary.ratio_ci(2.0 * rounds, rounds) == (2.0, 2.0, 2.0)


def test_interval_covers_the_true_nfp():
  true_ratio = [1.0, 1.0, 1.01, 1.02, 1.03, 1.35, 1.6, 2.0]  # NFP(0.1) = 6
  rng = np.random.default_rng(1)
  covered = 0
  for i in range(200):
    d = boundary.decide(POSITIONS, simulate(true_ratio, 30, rng), 0.1,
                        n_boot=300, seed=i)
    covered += d.interval[0] <= 6 <= d.interval[1]
  assert covered >= 180


def test_decided_on_a_clear_curve():
  true_ratio = [1.0, 1.0, 1.01, 1.02, 1.03, 1.35, 1.6, 2.0]
  d = boundary.decide(POSITIONS, simulate(true_ratio, 40, np.random.default_rng(0),
                                          sigma=0.02), 0.1)
  assert (d.nfp, d.status, d.reason) == (6, 'decided', None)
  assert set(d.p_values) == {2, 3, 4, 6, 8}


def test_never_decided_when_the_crossing_is_ambiguous_by_construction():
  # R(8) straddles 1 + tau: in every run exactly half of its paired ratios lie
  # above, half below (a random half), so no number of rounds can say which
  # side it is on; the other points are clear.
  true_ratio = [1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.6, 2.0]
  rng = np.random.default_rng(2)
  for i in range(50):
    samples = simulate(true_ratio, 30, rng, sigma=0.02)
    side = rng.permutation(np.repeat([1.04, 1 / 1.04], 15))
    samples[8] = samples[1] * 1.1 * side * rng.uniform(0.999, 1.001, 30)
    d = boundary.decide(POSITIONS, samples, 0.1, n_boot=100, seed=i)
    assert d.status == 'unresolved', d
    assert 8 in d.ambiguous
    assert 'N=8' in d.reason and 'Holm' in d.reason


def test_a_point_on_the_tolerance_is_rarely_decided():
  # R(6) is exactly 1 + tau: whichever side a run decides, it is wrong, and
  # the sign tests with Holm allow that in at most 5% of runs (family-wise);
  # in 100 runs at most 10 (a binomial tail below 1e-2 at the 5% rate).
  true_ratio = [1.0, 1.0, 1.0, 1.0, 1.1, 1.6, 1.8, 2.0]
  rng = np.random.default_rng(7)
  decided = sum(
      boundary.decide(POSITIONS, simulate(true_ratio, 40, rng), 0.1,
                      n_boot=20).status == 'decided' for _ in range(100))
  assert decided <= 10


def test_holm_step_down():
  assert boundary.holm({'a': 0.01, 'b': 0.04}) == {'a': True, 'b': True}
  assert boundary.holm({'a': 0.03, 'b': 0.04}) == {'a': False, 'b': False}
  assert boundary.holm({'a': 0.001, 'b': 0.2}) == {'a': True, 'b': False}


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_adaptive_rounds_stop_at_the_budget_and_time_the_ambiguous_n():
  clock = FakeClock()
  cost = {1: 1.0, 2: 1.0, 3: 1.1, 4: 2.0}  # N=3 stays on the tolerance edge

  def call(n):
    def run():
      clock.now += cost[n]
    return run

  timed = measure.time_rounds(
      {n: call(n) for n in cost}, min_rounds=5, max_rounds=1000,
      time_budget_s=100.0, warmup=0, undecided=lambda samples: {3},
      check_every=1, clock=clock)
  assert timed.stopped == 'time budget'
  spent = clock.now
  assert 100.0 <= spent < 100.0 + sum(cost.values())
  per_n = timed.rounds_per_key()
  assert per_n[2] == per_n[4] == 5  # the decided N: first batch only
  assert per_n[3] == per_n[1] > 5   # the ambiguous N, always with N=1
  assert np.isnan(timed.samples[2][5:]).all()


def test_adaptive_rounds_stop_when_decided():
  clock = FakeClock()
  calls = {n: (lambda n=n: setattr(clock, 'now', clock.now + n)) for n in (1, 2)}
  timed = measure.time_rounds(calls, min_rounds=4, max_rounds=50,
                              time_budget_s=1e9, warmup=0,
                              undecided=lambda samples: set(), clock=clock)
  assert timed.stopped == 'decided' and len(timed.conditions) == 4


def test_round_plan_bad_input():
  for plan, text in ((measure.RoundPlan(2, 10, 5), 'At least 3'),
                     (measure.RoundPlan(20, 10, 5), 'more than --max_rounds'),
                     (measure.RoundPlan(5, 10, 0), 'must be positive')):
    with pytest.raises(errors.ConfigError, match=text):
      plan.checked()


@pytest.mark.parametrize('args,text', [
    (['--time_budget_s', '0'], 'time_budget_s must be positive'),
    (['--min_rounds', '20', '--max_rounds', '10'], 'more than --max_rounds'),
    (['--min_rounds', '2'], 'At least 3 rounds'),
])
def test_sweep_cli_bad_round_flags(args, text, tmp_path, cli_env):
  out = tmp_path / 'kept'
  out.mkdir()
  (out / 'results.jsonl').write_text('{"kind": "summary", "config_id": "x"}\n')
  proc = cli.run('experiments.sweep', ['--module', 'dense', '--model', 'tiny',
                                       '--out', str(out)] + args, cli_env)
  assert proc.returncode == 2 and text in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert (out / 'results.jsonl').read_text().startswith('{"kind": "summary"')


def test_regime_change_is_found_and_ignored_within_noise():
  rng = np.random.default_rng(3)
  steady = 30e9 * rng.lognormal(0, 0.02, 60)
  assert conditions.regime_change(steady) is None
  step = np.concatenate([steady[:30], 24e9 * rng.lognormal(0, 0.02, 30)])
  change = conditions.regime_change(step)
  assert change and abs(change['round'] - 30) <= 2
  assert change['before_gbs'] > change['after_gbs']


def test_round_record_marks_interference():
  tick = os.sysconf('SC_CLK_TCK')  # ticks per second
  base = dict(wall=0.0, cpu=0.0, load1=1.0, stat=(1000, 0, 0, 500))
  quiet = conditions.round_record(base, dict(wall=1.0, cpu=1.0, load1=1.0,
                                             stat=(1100, 0, 1, 500 + tick)))
  stolen = conditions.round_record(base, dict(wall=1.0, cpu=1.0, load1=1.0,
                                              stat=(1100, 10, 0, 500 + tick)))
  starved = conditions.round_record(base, dict(wall=1.0, cpu=0.3, load1=3.0,
                                               stat=(1100, 0, 0, 500 + tick)))
  # This process used one core, the machine two: a competing busy loop.
  competed = conditions.round_record(base, dict(wall=1.0, cpu=1.0, load1=1.0,
                                                stat=(1100, 0, 0, 500 + 2 * tick)))
  assert quiet['others_cores'] == pytest.approx(0.0)
  assert competed['others_cores'] == pytest.approx(1.0)
  assert not quiet['interfered'] and stolen['interfered'] and starved['interfered']
  assert competed['interfered']


def test_repeatability_report_on_fake_sweeps():
  outcomes = iter([(4, 'decided'), (4, 'decided'), (2, 'decided'), (1, 'unresolved')])

  def fake():
    nfp, status = next(outcomes)
    return dict(nfp={'0.1': nfp}, nfp_status={'0.1': status},
                nfp_interval={'0.1': [nfp, nfp]}, unresolved_reason={'0.1': None},
                ratio=[1, 1.0, 2.0], ratio_ci=[[1, 1], [0.98, 1.04], [1.0, 1.1]], rounds=15,
                conditions=dict(bandwidth_gbs=30.0, bandwidth_ci_gbs=[29.0, 31.0],
                                share_interfered=0.0))

  class Cfg:
    module, preset, scale = 'dense', 'tiny', 1.0

  report = repeatability.run_sweeps(Cfg, [1, 2, 4], 4, balance=None, plan=None,
                                    measure=fake)
  assert (report['mode'], report['mode_count'], report['decided']) == (4, 2, 3)
  assert report['decided_off_mode'] == 1
  assert report['median_half_width'] == pytest.approx(0.04)
  assert report['median_rel_half_width'] == pytest.approx((0.03 + 0.025) / 2)
  assert 'mode NFP(0.1) = 4: reached by 2 of 4 runs' in repeatability.text(report)
