"""The anchor readers on real excerpts, the robust NFP rule, symmetric censoring,
scoring, and the validate CLI's bad-input exits."""

import dataclasses
import pathlib

import pytest

from nfp_jax import anchors
from nfp_jax import errors
from nfp_jax import targets
from tests import cli

DATA = pathlib.Path(__file__).parent / 'data'
AIC = DATA / 'anchors' / 'aiconfigurator_excerpt.csv'
VIDUR = DATA / 'anchors' / 'h100_llama-2-7b_mlp_excerpt.csv'


def test_aiconfigurator_reader():
  curves = anchors.read(AIC)
  assert sorted(c.name for c in curves) == [
      'h200-gemm-2048x32', 'h200-gemm-4096x4096', 'l40s-gemm-2048x32',
      'l40s-gemm-4096x4096']
  c = next(c for c in curves if c.name == 'h200-gemm-4096x4096')
  assert (c.target, c.kind, c.k, c.f) == ('h200', 'gemm', 4096, 4096)
  assert c.positions[:3] == (1, 2, 3) and c.positions[-1] == 1025
  assert len(c.positions) == len(c.t_s) == 45
  assert all(1e-6 < t < 1e-3 for t in c.t_s)  # microseconds read as seconds


def test_vidur_reader():
  (c,) = anchors.read(VIDUR)
  assert (c.gpu, c.target, c.kind, c.k, c.f) == ('h100', 'h100', 'mlp', 4096, 11008)
  assert c.positions[:3] == (1, 2, 4)
  # T = up + act + down medians, milliseconds read as seconds
  assert all(50e-6 < t < 1e-3 for t in c.t_s)


def test_bad_anchor_files(tmp_path):
  with pytest.raises(errors.ConfigError, match='neither'):
    anchors.read(DATA / 'hlo' / 'MANIFEST.json')
  bad = tmp_path / 'mi300_gemm.csv'
  bad.write_text('gpu,framework,in_features,out_features,tokens,latency_us\n'
                 'mi300,x,32,32,1,2.5\n')
  with pytest.raises(errors.ConfigError, match='no target'):
    anchors.read(bad)


def test_robust_nfp_ignores_one_noisy_point():
  positions = [1, 2, 3, 4, 8, 16, 17, 32, 33]
  times = [1.0, 1.02, 0.98, 1.0, 1.3, 1.0, 1.01, 1.2, 1.25]  # one spike at 8
  nfp = anchors.robust_nfp(positions, times, 0.1)
  assert (nfp.nfp, nfp.crossing, nfp.censored) == (17, 32, False)
  # T(1) alone fast (a GEMV at N=1): the baseline is the median of T(1..4)
  slow_after_one = [0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.05, 1.05]
  assert anchors.robust_nfp(positions, slow_after_one, 0.1).censored
  flat = anchors.robust_nfp(positions, [1.0] * 9, 0.1)
  assert (flat.nfp, flat.censored) == (33, True)
  early = anchors.robust_nfp(positions, [1.0, 1.0, 1.0, 1.0, 1.5, 1.6, 2, 2, 2], 0.1)
  assert (early.nfp, early.crossing) == (4, 8)


def test_tau_sensitive_flags_a_plateau_near_the_tolerance():
  positions = [1, 2, 3, 4, 8, 16, 17, 32, 33, 64, 65]
  # A step to 1.09 at N=17, then 1.15 from 64: NFP(0.08) = 16, NFP(0.12) = 33.
  plateau = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.09, 1.09, 1.09, 1.15, 1.15]
  assert anchors.tau_sensitive(positions, plateau, 0.1)
  # A clean step to 1.5 at N=17: NFP 16 at every tau near 0.1.
  step = [1.0] * 6 + [1.5] * 5
  assert not anchors.tau_sensitive(positions, step, 0.1)
  assert anchors.robust_nfp(positions, plateau, 0.08).nfp == 16
  assert anchors.robust_nfp(positions, plateau, 0.12).nfp == 33


def test_censoring_is_symmetric():
  end = 1025
  censored = anchors.Nfp(end, True, None)
  assert anchors.log2_error(anchors.Nfp(end, True, None), censored, end) == 0.0
  assert anchors.log2_error(anchors.Nfp(2048, False, 4096), censored, end) == 0.0
  assert anchors.log2_error(anchors.Nfp(256, False, 257), censored, end) == (
      pytest.approx(-2.0, abs=0.01))  # scored against the grid end
  measured = anchors.Nfp(64, False, 65)
  assert anchors.log2_error(anchors.Nfp(end, True, None), measured, end) == (
      pytest.approx(4.0, abs=0.01))  # never crossing = the grid end
  assert anchors.log2_error(anchors.Nfp(128, False, 129), measured, end) == 1.0


def test_evaluate_scores_every_predictor_on_an_excerpt():
  report = anchors.evaluate(AIC, tiling='model-autotune')
  s = report['summary']
  assert s['all']['principle']['curves'] == 4 and set(s['per_gpu']) == {'h200', 'l40s'}
  for name in anchors.PREDICTORS:
    scores = s['all'][name]
    assert 0 <= scores['share_within_1_5x'] <= scores['share_within_2x'] <= 1
  for r in report['curves']:
    assert r['tiling_source'] == 'model-autotune' and len(r['configs']) == 45
    if abs(r['log2_error']['0.1']['principle']) > 1:
      assert r['missing_mechanism']['0.1']['name'] in anchors.MISSING_MECHANISMS
      counts = s['missing_mechanisms'][r['gpu']]
      assert counts[r['missing_mechanism']['0.1']['name']] >= 1
  assert 'calibrat' in report['pricing']['h200']['calibration']
  text = anchors.markdown(report)
  assert 'within x2' in text and 'Censoring' in text


def test_evaluate_stride_keeps_every_kth_curve():
  every = anchors.evaluate(AIC, stride=1, taus=(0.1,))
  second = anchors.evaluate(AIC, stride=2, taus=(0.1,))
  assert [r['name'] for r in second['curves']] == [r['name'] for r in every['curves']][::2]
  assert second['stride'] == 2 and '(one curve in 2)' in anchors.markdown(second)


def test_validate_cli_bad_anchor_exits_2(tmp_path, cli_env):
  # A repeated --anchor reads every file (the bad one first, a good one last).
  proc = cli.run('experiments.validate', ['--anchor', str(DATA / 'hlo' / 'MANIFEST.json'),
                                          '--anchor', str(AIC), '--anchor_only',
                                          '--out', str(tmp_path / 'v')],
                 cli_env)
  assert proc.returncode == 2
  assert 'neither a vidur MLP profile nor an aiconfigurator' in proc.stderr


@cli.requires_gpu_aot
def test_compiled_linear_matches_the_derived_structure():
  """The anchors derive a projection's structure (one GEMM, its split-K reduce
  if the winner splits K) instead of compiling it: from N=2 on the compiled
  linear block under model-autotune prices the same, less the forward floor.
  (At N=1 XLA may emit a multiply fusion plus a reduce, which writes the whole
  product; the anchors price the GEMV that cuBLAS runs there.)"""
  from nfp_jax import config  # pylint: disable=g-import-not-at-top
  from nfp_jax import predict  # pylint: disable=g-import-not-at-top
  from nfp_jax import pricing_gpu  # pylint: disable=g-import-not-at-top
  from nfp_jax import targets  # pylint: disable=g-import-not-at-top
  target = targets.resolve('h200')
  cfg = config.resolve('linear', 'tiny', overrides=dict(d_model=2048, d_ff=1024),
                       dtype='bfloat16')
  positions = [1, 16, 65]
  compiled = predict.predict(cfg, positions, target=target)
  assert compiled.tiling_source == 'model-autotune'
  curve = anchors.AnchorCurve('x', 'h200', 'h200', 'gemm', 2048, 1024,
                              tuple(positions), (1.0,) * 3, 'test', 'test')
  points, _, _ = anchors.principle_curve(curve, target, None, lambda _: None)
  floor = pricing_gpu.forward_floor_s(target.spec)
  for p, t in list(zip(points, compiled.t_pred_s))[1:]:
    assert t - floor == pytest.approx(p.t_s, rel=1e-6)
  # A tiling that compiles (cost-model) is timed the same way: no forward floor.
  llama = config.resolve('linear', 'llama3-8b', dtype='bfloat16',
                         overrides=dict(d_model=2048, d_ff=1024))
  cost = predict.predict(llama, positions, target=target, tiling='cost-model')
  points, source, _ = anchors.principle_curve(curve, target, 'cost-model',
                                              lambda _: None)
  assert source == 'cost-model'
  for p, t in zip(points, cost.t_pred_s):
    assert p.t_s == pytest.approx(t - floor, rel=1e-6)


def test_missing_mechanism_names_a_slow_small_m_kernel():
  """A measured curve slower at N <= 4 than at N = 8-16 (L40S 4096x32 reads
  3, 18, 18, 18 us then 4 us from N = 16) gets its own line; a plain curve
  falls through to the other rules."""
  spec = targets.resolve('l40s').spec
  positions = (1, 2, 3, 4, 8, 16, 32)
  slow = anchors.AnchorCurve('x', 'l40s', 'l40s', 'gemm', 4096, 32, positions,
                             (3e-6, 18e-6, 18e-6, 18e-6, 18e-6, 4e-6, 4e-6), 'test', 'test')
  measured = anchors.robust_nfp(positions, slow.t_s, 0.1)
  assert measured.censored
  miss = anchors._missing_mechanism(slow, measured, anchors.Nfp(2, False, 3),
                                    [3e-6] * 7, spec)
  assert miss['name'] == 'slow_small_m' and '4.5x' in miss['text']
  plain = dataclasses.replace(slow, t_s=(3e-6,) * 7)
  miss = anchors._missing_mechanism(plain, anchors.robust_nfp(positions, plain.t_s, 0.1),
                                    anchors.Nfp(2, False, 3), [3e-6] * 7, spec)
  assert miss['name'] != 'slow_small_m' and miss['text'] in (
      text for text in anchors.MISSING_MECHANISMS.values())


def test_calibration_split_takes_every_fourth_curve_per_gpu():
  def record(gpu, err, kind='gemm'):
    return dict(gpu=gpu, kind=kind, log2_error={'0.1': dict(
        principle=err, resource=err, idle=err)})
  # h200 curves interleaved with l40s ones: the subset is per GPU, in file order.
  records = []
  for i in range(8):
    records += [record('h200', 0.0 if i % 4 == 0 else 2.0), record('l40s', 1.0)]
  records.append(record('a100', 3.0, kind='mlp'))  # vidur: no calibration
  split = anchors.calibration_split(records)
  assert set(split) == {'h200', 'l40s'}
  assert split['h200']['calibration']['curves'] == 2
  assert split['h200']['calibration']['median_abs_log2_error'] == 0.0
  assert split['h200']['rest']['curves'] == 6
  assert split['h200']['rest']['median_abs_log2_error'] == 2.0
  assert split['l40s']['rest']['share_within_2x'] == 1.0


def test_latency_error_is_the_median_abs_log2_over_every_point():
  records = [dict(t_pred_s=[2.0, 4.0], t_measured_s=[1.0, 4.0]),  # x2, exact
             dict(t_pred_s=[1.0], t_measured_s=[8.0])]  # x1/8
  assert anchors.latency_error(records) == pytest.approx(1.0)  # of 0, 1, 3


def test_calibrate_overlap_reports_both_scores_per_value():
  out = anchors.calibrate_overlap(AIC, 'h200', values=(0.0, 1.0), every=1)
  assert set(out) == {0.0, 1.0}
  for scores in out.values():
    assert scores['curves'] == 2 and scores['latency_error'] >= 0
  # Hiding the shorter of compute and memory changes the priced latencies.
  assert out[0.0]['latency_error'] != out[1.0]['latency_error']
