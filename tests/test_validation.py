"""Validation: scoring rules (intervals, symmetric censoring, unresolved cases),
the missing-mechanism rule, the case runner with a fake measuring function,
and the CLI (anchor readers: test_anchors.py)."""

import json
import math
import pathlib
import types

import pytest

from nfp_jax import boundary
from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import principle
from nfp_jax import sweep
from nfp_jax import validation
from tests import cli
from tests.cli import requires_gpu_aot

DATA = pathlib.Path(__file__).parent / 'data'
CPU = hardware.Balance(name='test-cpu', dtype='float32', peak_flops=2e11,
                       bandwidth=4e10, source='test', call_floor_s=5e-6,
                       kernel_overhead_s=1e-6, fault_bandwidth=3e9,
                       fresh_threshold_bytes=1)


def record(measured, principle_nfp=1, resource=1, idle=1, positions=(1, 2, 4, 8),
           censored=None, **extra):
  """A case record with only the fields scoring reads."""
  nxt = [n for n in positions if n > measured]
  censored = (measured == positions[-1]) if censored is None else censored
  return dict(name=f'm{measured}-p{principle_nfp}', positions=list(positions),
              nfp_measured={'0.1': measured},
              nfp_bracket={'0.1': [measured, None if censored else nxt[0]]},
              nfp_predicted={'0.1': principle_nfp}, nfp_resource={'0.1': resource},
              n_idle={'0.1': idle}, **extra)


def test_interval_error():
  assert validation.interval_error(4, 4, 4, 64, False) == 0
  assert validation.interval_error(8, 4, 4, 64, False) == 1
  assert validation.interval_error(1, 4, 4, 64, False) == -2
  assert validation.interval_error(6, 4, 8, 64, False) == 0  # inside the interval
  assert validation.interval_error(32, 4, 8, 64, False) == 2  # to the nearer end
  # Beyond the grid end counts as the grid end.
  assert validation.interval_error(1000, 4, 4, 64, False) == 4


def test_censoring_is_symmetric_for_every_predictor():
  # The measured curve never crosses in the grid [1..8].
  r = record(8, principle_nfp=8, resource=4, idle=1000)
  errs = validation.case_errors(r, '0.1')
  assert errs == {'principle': 0.0, 'idle': 0.0, 'resource': -1.0, 'always_1': -3.0}
  # Crossing at 4: the same predictions are judged from the grid end down.
  errs = validation.case_errors(record(4, principle_nfp=8, resource=4, idle=1000), '0.1')
  assert errs == {'principle': 1.0, 'idle': 1.0, 'resource': 0.0, 'always_1': -2.0}


def test_measured_interval_and_status_are_read_defensively():
  r = record(4, principle_nfp=8, nfp_interval={'0.1': [2, 8]},
             nfp_status={'0.1': 'decided'})
  assert validation.case_errors(r, '0.1')['principle'] == 0.0
  for junk in ({'0.1': None}, {'0.1': 'wide'}, {'0.1': [0, 8]}, None, {}):
    r = record(4, principle_nfp=8, nfp_interval=junk)
    m = validation.measured_target(r, '0.1')
    assert (m['low'], m['high'], m['status']) == (4, 4, 'decided')
  # Without a bracket (an external curve), the grid end means censored.
  assert validation.measured_target(dict(record(8), nfp_bracket={}), '0.1')['censored']


def test_scores_shares_and_unresolved_cases():
  records = [record(1, principle_nfp=1, idle=8),       # principle exact
             record(4, principle_nfp=6, idle=16),      # x1.5
             record(2, principle_nfp=8, idle=8),       # x4: a miss
             record(8, principle_nfp=8, idle=64),      # censored: both right
             record(2, principle_nfp=8, nfp_status={'0.1': 'unresolved'})]
  s = validation.summarize(records)
  assert s['cases'] == 5 and s['decided'] == 4 and s['unresolved'] == ['m2-p8']
  assert s['censored'] == 1
  p = s['scores']['principle']
  assert p['share_within_1_5x'] == pytest.approx(3 / 4)
  assert p['share_within_2x'] == pytest.approx(3 / 4)
  assert p['median_abs_log2_error'] == pytest.approx(math.log2(1.5) / 2)
  one = s['scores']['always_1']
  assert one['share_within_1_5x'] == pytest.approx(1 / 4)
  assert one['median_abs_log2_error'] == pytest.approx(1.5)
  idle = s['scores']['idle']  # x8, x2 (16 read as the grid end 8), x4, right
  assert idle['share_within_2x'] == pytest.approx(2 / 4)
  assert idle['share_within_1_5x'] == pytest.approx(1 / 4)
  assert s['principle_beats'] == {'resource': True, 'idle': True, 'always_1': True}
  assert s['misses_over_2x'] == ['m2-p8']
  assert s['share_measured_above_2'] == pytest.approx(2 / 4)
  # The unresolved case beside its interval (the point NFP here: [2, 2]).
  assert s['unresolved_intervals'] == [dict(name='m2-p8', interval=[2.0, 2.0],
                                            principle=8, principle_inside=False,
                                            above_2=False)]
  wide = record(4, principle_nfp=4, nfp_interval={'0.1': [3, 6]},
                nfp_status={'0.1': 'unresolved'})
  detail = validation.summarize([wide])['unresolved_intervals'][0]
  assert detail['principle_inside'] and detail['above_2']
  wide.update(binding_mechanism={'0.1': 'resource'}, t1_roofline_fraction=0.5,
              t_abs_log2_error=0.1, log2_error={'0.1': validation.case_errors(wide, '0.1')})
  text = validation.markdown([wide], validation.summarize([wide]), {})
  assert 'inside it in 1 of 1' in text and 'above 2 in 1 of 1' in text


def prediction(t_pred, nfp, mechanism='kernel_switch', kinds=None, positions=(1, 2, 4, 8)):
  kinds = kinds or {}
  points = [dict(positions=n, kernels=[dict(source_op='proj', kind=kinds.get(n, 'cpu_ynn'))])
            for n in positions]
  return types.SimpleNamespace(t_pred_s=list(t_pred), positions=list(positions),
                               nfp_predicted={'0.1': nfp},
                               binding_mechanism={'0.1': mechanism}, points=points)


def test_missing_mechanism_rule():
  measured = dict(t_median_s=[1.0, 1.0, 2.0, 4.0], positions=[1, 2, 4, 8],
                  nfp={'0.1': 2})
  assert validation.missing_mechanism(measured, prediction([1] * 4, 4), '0.1', 1.0) is None
  off = validation.missing_mechanism(measured, prediction([3, 3, 3, 3], 8), '0.1', 2.0)
  assert off['name'] == 'n1_cost' and 'x3.0 above' in off['text']
  hidden = validation.missing_mechanism(measured, prediction([1, 1, 1, 1], 8), '0.1', 2.0)
  assert hidden['name'] == 'hidden_step' and 'N=2->4' in hidden['text']
  switch = validation.missing_mechanism(
      measured, prediction([1, 1, 1, 1], 8, kinds={4: 'cpu_dot'}), '0.1', 2.0)
  assert switch['name'] == 'switch_cost'
  under = validation.missing_mechanism(
      dict(measured, nfp={'0.1': 8}), prediction([1, 2, 2, 2], 1, 'tile_boundary'),
      '0.1', -3.0)
  assert under['name'] == 'overpriced_step' and 'tile_boundary step at N=1->2' in under['text']


def fake_measure(t_of_n, calls, status=None):
  """A measuring function with a known curve: what a sweep summary holds."""
  def measure(cfg, positions, balance):
    calls.append(cfg)
    t = [t_of_n(n) for n in positions]
    ratio = [x / t[0] for x in t]
    bounds = {boundary.tau_key(tau): boundary.find(positions, ratio, tau=tau)
              for tau in boundary.TAUS}
    summary = dict(
        config_id=cfg.config_id(positions), config=cfg.to_dict(),
        positions=list(positions), nfp={k: b.nfp for k, b in bounds.items()},
        nfp_bracket={k: list(b.bracket) for k, b in bounds.items()},
        nfp_range={k: [b.nfp, b.nfp] for k, b in bounds.items()},
        n_idle=principle.idle_compute(cfg, balance), t_median_s=t, ratio=ratio,
        ratio_ci=[[r, r] for r in ratio],
        t1_roofline_fraction=principle.t1_roofline_fraction(cfg, balance, t[0]))
    if status:
      summary['nfp_status'] = {k: status for k in bounds}
    # A temp block of n GB: with every buffer faulting at 3 GB/s, n/3 s.
    points = [dict(positions=n, status='ok',
                   memory_analysis=dict(temp_size_in_bytes=int(n * 1e9)))
              for n in positions]
    return sweep.SweepResult(points, summary)
  return measure


LINEAR = validation.Case('linear-tiny', 'linear', 'tiny', 1.0, False,
                         (('overrides', (('d_model', 64), ('d_ff', 96))),))


def test_case_runner_with_a_fake_measure():
  calls, done = [], []
  records = validation.run_cases(
      [LINEAR], [1, 2, 4], measure=fake_measure(lambda n: 1e-3 * (1 + (n > 2)), calls),
      balance_for=lambda dtype: CPU, probe=None,
      on_case=lambda i, case, r: done.append((i, case.name)))
  (r,) = records
  assert calls == [LINEAR.config()] and done == [(0, 'linear-tiny')]
  assert r['name'] == 'linear-tiny' and r['nfp_measured']['0.1'] == 2
  assert r['nfp_bracket']['0.1'] == [2, 4]
  assert set(r['log2_error']['0.1']) == set(validation.PREDICTORS)
  assert r['binding_mechanism']['0.1'] in principle.MECHANISMS + (None,)
  unresolved = validation.run_case(LINEAR, [1, 2, 4], balance=CPU, probe=None,
                                   measure=fake_measure(lambda n: 1e-3, [], 'unresolved'))
  assert validation.summarize([unresolved])['decided'] == 0


def test_a_model_case_takes_the_measured_programs_memory():
  model = validation.Case('model-tiny', 'model', 'tiny', 1.0)
  r = validation.run_case(model, [1, 2], balance=CPU, probe=None,
                          measure=fake_measure(lambda n: 1e-3, []))
  # Each N's temp block of N GB (from the measured points) faults at 3 GB/s.
  assert r['t_pred_s'][0] >= 1 / 3 and r['t_pred_s'][1] >= 2 / 3
  assert r['t_pred_s'][1] < 1


def test_select_cases():
  quick = validation.select_cases(quick=True)
  assert quick and all(c.quick for c in quick)
  assert [c.name for c in validation.select_cases(['dense-small'])] == ['dense-small']
  assert len(validation.select_cases()) == len(validation.CASES)
  with pytest.raises(errors.ConfigError, match='Unknown case'):
    validation.select_cases(['nope'])


def test_markdown_names_machine_scores_and_misses():
  records = [dict(record(2, principle_nfp=8, idle=8), binding_mechanism={'0.1': 'resource'},
                  t1_roofline_fraction=0.5, t_abs_log2_error=0.1,
                  log2_error={'0.1': validation.case_errors(record(2, principle_nfp=8), '0.1')},
                  missing_mechanism={'0.1': dict(name='hidden_step', text='a step')})]
  text = validation.markdown(records, validation.summarize(records),
                             dict(model='Test CPU', cpu_count=2, isa_flags=['avx2']))
  assert 'Test CPU' in text and 'avx2' in text
  assert 'hidden_step: a step' in text
  for label in validation.PREDICTOR_LABELS.values():
    assert f'| {label} |' in text
  assert 'consistent with' not in text


def test_bad_anchor_is_reported_before_any_case_is_measured(tmp_path, cli_env):
  proc = cli.run('experiments.validate', [
      '--cases', 'dense-small', '--anchor', str(tmp_path / 'nope_h100.csv'),
      '--out', str(tmp_path / 'v')], cli_env, timeout=120)
  assert proc.returncode == 2 and 'Cannot read the anchor' in proc.stderr
  assert 'Traceback' not in proc.stderr and 'dense-small' not in proc.stderr
  assert not (tmp_path / 'v').exists()


@requires_gpu_aot
def test_validate_cli_with_a_case_and_an_anchor(tmp_path, cli_env):
  out = tmp_path / 'v'
  proc = cli.run('experiments.validate', [
      '--cases', 'dense-small', '--repeats', '3', '--positions', '1,2,4',
      '--anchor', str(DATA / 'anchors' / 'h100_llama-2-7b_mlp_excerpt.csv'),
      '--out', str(out)], cli_env, timeout=900)
  assert proc.returncode == 0, proc.stderr
  report = json.loads((out / 'report.json').read_text())
  case = report['cases'][0]
  for key in ('nfp_measured', 'nfp_bracket', 'nfp_predicted', 'nfp_resource',
              'n_idle', 'binding_mechanism', 'log2_error', 'missing_mechanism'):
    assert key in case
  assert set(report['summary']['scores']) == set(validation.PREDICTORS)
  assert report['machine']['cpu_count'] >= 1
  assert report['anchor_summary']
  anchors = json.loads((out / 'anchors.json').read_text())
  assert anchors['curves'][0]['kind'] == 'mlp'
  assert (out / 'anchors.md').exists() and (out / 'anchors.png').exists()
  assert (out / 'report.md').exists() and (out / 'overview.png').exists()
  bad = cli.run('experiments.validate', ['--cases', 'nope'], cli_env)
  assert bad.returncode == 2 and 'Unknown case' in bad.stderr
