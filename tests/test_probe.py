"""The granularity probe: its derivations on synthetic curves, and a tiny real run."""

import json

import numpy as np
import pytest

from nfp_jax import probe


def curve(times, noise=0.01):
  times = np.asarray(times, float)
  return times, np.stack([times * (1 - noise), times * (1 + noise)], axis=1)


def test_kernel_switches():
  switches = probe.kernel_switches([1, 2, 3, 4], ['cpu_gemv', 'cpu_ynn',
                                                 'cpu_ynn', 'cpu_dot'])
  assert [(s['from_positions'], s['to_positions'], s['to_kind'])
          for s in switches] == [(1, 2, 'cpu_ynn'), (3, 4, 'cpu_dot')]
  assert probe.kernel_switches([1, 2], ['cpu_ynn', 'cpu_ynn']) == []


def test_no_steps_on_a_flat_or_steadily_growing_curve():
  positions = list(range(1, 65))
  for times in (np.full(64, 1e-3), 1e-3 + 1e-5 * np.arange(64)):
    t, ci = curve(times)
    assert probe.latency_steps(positions, t, ci) == []


def test_steps_at_tile_boundaries_give_the_period():
  positions = list(range(1, 65))
  # A 16-wide tile: flat inside a tile, +30% at 17, 33, 49.
  times = 1e-3 * (1 + 0.3 * ((np.asarray(positions) - 1) // 16))
  t, ci = curve(times)
  steps = probe.latency_steps(positions, t, ci)
  assert [s['to_positions'] for s in steps] == [17, 33, 49]
  assert probe.tile_period(steps) == 16


def test_step_inside_the_noise_is_not_a_step():
  positions = [1, 2, 3, 4]
  t = np.array([1.0, 1.0, 1.08, 1.08]) * 1e-3
  ci = np.stack([t * 0.9, t * 1.1], axis=1)  # CIs overlap
  assert probe.latency_steps(positions, t, ci) == []


def test_kernel_switch_step_is_found():
  positions = list(range(1, 9))
  t, ci = curve([1.0, 3.0, 3.0, 3.01, 3.02, 3.02, 3.03, 3.04])
  steps = probe.latency_steps(positions, t, ci)
  assert [(s['from_positions'], s['to_positions']) for s in steps] == [(1, 2)]
  assert steps[0]['jump_ratio'] == pytest.approx(3.0)


def test_no_period_from_a_few_jumps_sharing_a_divisor():
  steps = [dict(from_positions=n, to_positions=n + 1) for n in (20, 25, 30, 60)]
  assert probe.tile_period(steps) is None  # 5 explains 4 of its 12 multiples
  assert probe.tile_period(steps[:1]) is None


def test_kind_rates_arithmetic():
  ref = probe.ReferenceCurve(
      dtype='float32', contraction=1000, features=2000, positions=(1, 2, 4),
      t_median_s=(1e-3, 2e-3, 2e-3), t_ci_s=((0, 0),) * 3,
      kinds=('cpu_gemv', 'cpu_ynn', 'cpu_ynn'), llvm_functions=(None,) * 3)
  rates = probe.kind_rates(ref)
  gemv_bytes = (1000 * 2000 + 1 * 3000) * 4
  assert rates['cpu_gemv']['bandwidth_bytes_per_s'] == pytest.approx(gemv_bytes / 1e-3)
  assert rates['cpu_ynn']['flop_rate'] == pytest.approx(2 * 4 * 1000 * 2000 / 2e-3)
  assert rates['cpu_ynn']['positions'] == [2, 4]


def test_tiny_real_probe_and_its_cache(tmp_path):
  cache = tmp_path / 'probe.json'
  kwargs = dict(shapes=((96, 64),), positions=(1, 2, 3, 4), rounds=3)
  result = probe.local_probe(str(cache), **kwargs)
  ref = result['references'][0]
  assert ref['kinds'][0] == 'cpu_gemv' and ref['kinds'][1] == 'cpu_ynn'
  assert ref['kernel_switches'][0]['to_kind'] == 'cpu_ynn'
  assert all(t > 0 for t in ref['t_median_s'])
  assert ref['llvm_functions'][0].startswith('col_major_gemv_F32_')
  assert set(result['kinds']) == {'cpu_gemv', 'cpu_ynn'}
  assert result['kinds']['cpu_ynn']['float32']['flop_rate'] > 0
  assert result['machine_key'] and result['backend'] == 'cpu'
  # The spot check with a fake timer: the cached medians hold, so the cache
  # is used; three times slower moves them beyond their CIs: re-measured.
  median_at = dict(zip(ref['positions'], ref['t_median_s']))
  same = lambda dtype, k, f, n: [median_at[n]] * 7
  again = probe.local_probe(str(cache), timer=same, **kwargs)
  assert again['measured_at'] == result['measured_at']
  assert again['spot_check'] and not again['spot_check']['moved']
  assert len(json.loads(cache.read_text())) == 1
  lines = []
  slower = lambda dtype, k, f, n: [3 * median_at[n] + 1e-3] * 7
  moved = probe.local_probe(str(cache), timer=slower, progress=lines.append, **kwargs)
  assert moved['measured_at'] != result['measured_at']
  assert any('moved beyond their CIs' in line for line in lines)


def _curve(t, ci, kinds):
  return probe.ReferenceCurve('float32', 64, 64, tuple(range(1, len(t) + 1)),
                              tuple(t), tuple(ci), tuple(kinds), (None,) * len(t))


def test_quality_flags_wide_and_disagreeing_curves():
  good = _curve([1.0, 1.0, 1.1], [(0.95, 1.05)] * 2 + [(1.05, 1.15)], ['a'] * 3)
  assert probe.quality(good) is None
  wide = _curve([1.0, 1.0], [(0.95, 1.05), (0.7, 1.4)], ['a'] * 2)
  assert 'wide CI at 1 of 2 N, widest N=2' in probe.quality(wide)
  # One wide point among eleven is tolerated (not more than 10% of them).
  one_of_11 = _curve([1.0] * 11, [(0.95, 1.05)] * 10 + [(0.7, 1.4)], ['a'] * 11)
  assert probe.quality(one_of_11) is None
  # 4741 us at N=2, then 3669 us at N=3 with the same kernel: not cached as is.
  dip = _curve([2.978e-3, 4.741e-3, 3.669e-3],
               [(2.9e-3, 3.0e-3), (4.6e-3, 4.8e-3), (3.6e-3, 3.7e-3)], ['g', 'y', 'y'])
  assert 'below T(2)' in probe.quality(dip)
  switch = _curve([2.0, 1.0], [(1.95, 2.05), (0.95, 1.05)], ['gemv', 'ynn'])
  assert probe.quality(switch) is None  # a faster kernel at a larger N is allowed


def test_spot_check_with_a_fake_timer():
  refs = [dict(dtype='float32', contraction=k, features=f, positions=[1, 2],
               t_median_s=[1e-3, 2e-3], t_ci_s=[[0.9e-3, 1.1e-3], [1.9e-3, 2.1e-3]])
          for k, f in ((64, 64), (256, 256))]
  cached = dict(references=refs)
  ok = probe.spot_check(cached, timer=lambda d, k, f, n: [n * 1e-3] * 7)
  assert not ok['moved'] and len(ok['points']) == 2
  off = probe.spot_check(cached, timer=lambda d, k, f, n: [n * 1.5e-3] * 7)
  assert off['moved'] and [p['moved'] for p in off['points']] == [True, True]
  assert {tuple(p['shape']) for p in off['points']} == {(256, 256)}
  # One point alone off (a transient) does not condemn the probe.
  one = probe.spot_check(cached, timer=lambda d, k, f, n: [n * 1e-3 * (1.5 if n == 2 else 1)] * 7)
  assert [p['moved'] for p in one['points']] == [False, True] and not one['moved']
