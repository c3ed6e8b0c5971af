"""nfp_jax.plan and experiments.plan: speedups on hand-computed curves, CI
propagation, N* against the near-free range, the readers of each curve source
(real result fixtures, tests/data/plan/README.md), bad input (exit 2)."""

import json
import os
import shutil

import pytest

from nfp_jax import errors
from nfp_jax import plan
from tests import cli

DATA = os.path.join(os.path.dirname(__file__), 'data', 'plan')
SWEEP = os.path.join(DATA, 'sweep_dense_tiny')
PREDICT = os.path.join(DATA, 'predict_dense_tiny_h100.json')
COMPARE = os.path.join(DATA, 'compare_dense_tiny')

# A curve whose near-free range (tau 0.1) ends at N = 2 and whose R has CIs.
CURVE = plan.Curve('synthetic', 'sweep', [1, 2, 4, 8], [1.0, 1.05, 1.5, 3.0],
                   [[1.0, 1.0], [1.0, 1.1], [1.4, 1.6], [2.5, 3.5]])
TABLE = 'positions,tokens\n1,1\n2,1.9\n4,3.5\n8,6.0\n'


def _table(tmp_path, text=TABLE, name='tokens.csv'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _speedups(p):
  return [r['speedup'] for r in p.rows]


def test_chain_tokens():
  assert [plan.chain_tokens(0.5, n) for n in (1, 2, 4, 8)] == pytest.approx(
      [1, 1.5, 1.875, 1.9921875])
  assert plan.chain_tokens(0.0, 16) == 1


def test_chain_speedup_without_and_with_draft_cost():
  accept = plan.parse_accept('chain:0.5')
  p = plan.plan(CURVE, accept)
  # a(N) / R(N): 1/1, 1.5/1.05, 1.875/1.5, 1.9921875/3.
  assert _speedups(p) == pytest.approx([1, 1.5 / 1.05, 1.25, 0.6640625])
  assert p.best == dict(positions=2, speedup=pytest.approx(1.5 / 1.05))
  # c = 0.1: denominators R(N) + (N - 1) c = 1, 1.15, 1.8, 3.7.
  p = plan.plan(CURVE, accept, draft_cost=0.1)
  assert _speedups(p) == pytest.approx([1, 1.5 / 1.15, 1.875 / 1.8,
                                        1.9921875 / 3.7])
  assert [r['tokens'] for r in p.rows] == pytest.approx([1, 1.5, 1.875, 1.9921875])
  assert p.accept == 'chain:0.5' and p.draft_cost == 0.1


def test_table_speedup_without_and_with_draft_cost(tmp_path):
  accept = plan.parse_accept('table:' + _table(tmp_path))
  p = plan.plan(CURVE, accept)
  assert _speedups(p) == pytest.approx([1, 1.9 / 1.05, 3.5 / 1.5, 2.0])
  p = plan.plan(CURVE, accept, draft_cost=0.2)  # 1, 1.25, 2.1, 4.4
  assert _speedups(p) == pytest.approx([1, 1.52, 3.5 / 2.1, 6 / 4.4])
  assert p.best == dict(positions=4, speedup=pytest.approx(3.5 / 2.1))


def test_ci_propagates_from_ratio_endpoints(tmp_path):
  accept = plan.parse_accept('table:' + _table(tmp_path))
  p = plan.plan(CURVE, accept)
  # S decreases in R: [a / R_high, a / R_low].
  assert [r['speedup_ci'] for r in p.rows] == [
      pytest.approx(ci) for ci in ([1, 1], [1.9 / 1.1, 1.9], [3.5 / 1.6, 2.5],
                                   [6 / 3.5, 6 / 2.5])]
  assert all(r['speedup_ci'][0] <= r['speedup'] <= r['speedup_ci'][1]
             for r in p.rows)
  p = plan.plan(CURVE, accept, draft_cost=0.2)
  assert p.rows[2]['speedup_ci'] == pytest.approx([3.5 / 2.2, 3.5 / 2.0])
  assert p.rows[2]['ratio_ci'] == [1.4, 1.6]
  predicted = plan.Curve('predicted', 'predict', CURVE.positions, CURVE.ratio, None)
  assert all(r['speedup_ci'] is None
             for r in plan.plan(predicted, accept).rows)


def test_best_differs_from_best_near_free(tmp_path):
  p = plan.plan(CURVE, plan.parse_accept('table:' + _table(tmp_path)))
  assert p.nfp == 2  # R(4) = 1.5 > 1.1
  assert p.best == dict(positions=4, speedup=pytest.approx(3.5 / 1.5))
  assert p.best_near_free == dict(positions=2, speedup=pytest.approx(1.9 / 1.05))
  assert p.near_free_share == pytest.approx((1.9 / 1.05) / (3.5 / 1.5))
  wide = plan.plan(CURVE, plan.parse_accept('table:' + _table(tmp_path)), tau=0.5)
  assert wide.nfp == 4 and wide.best_near_free['positions'] == 4
  assert wide.near_free_share == 1


def test_bad_acceptance_and_draft_cost(tmp_path):
  for spec in ('chain:1', 'chain:1.5', 'chain:-0.1', 'chain:x', 'chain:nan',
               'tree:0.5', 'table:', '0.8'):
    with pytest.raises(errors.ConfigError):
      plan.parse_accept(spec)
  bad_tables = {
      'non_increasing': 'positions,tokens\n1,1\n4,2\n2,1.5\n',
      'repeated': '1,1\n2,1.5\n2,1.6\n',
      'no_one': 'positions,tokens\n2,1.5\n4,2\n',
      'one_not_one': '1,1.2\n2,1.5\n',
      'too_many_tokens': '1,1\n2,2.5\n',
      'not_numbers': '1,1\n2,a\n',
  }
  for name, text in bad_tables.items():
    with pytest.raises(errors.ConfigError):
      plan.parse_accept('table:' + _table(tmp_path, text, name + '.csv'))
  with pytest.raises(errors.ConfigError, match='no row for N = 4, 8'):
    plan.plan(CURVE, plan.parse_accept('table:' + _table(tmp_path, '1,1\n2,1.9\n')))
  with pytest.raises(errors.ConfigError):
    plan.plan(CURVE, plan.parse_accept('chain:0.5'), draft_cost=-0.1)


def test_read_sweep_folder_and_its_log(tmp_path):
  summary = json.load(open(os.path.join(SWEEP, 'summary.json')))
  (curve,) = plan.read_curves(SWEEP)
  assert curve.source == 'sweep'
  assert curve.positions == summary['positions'] == [1, 2, 4, 8]
  assert curve.ratio == summary['ratio'] and curve.ratio_ci == summary['ratio_ci']
  # A folder killed before summary.json: the summary record of results.jsonl.
  shutil.copy(os.path.join(SWEEP, 'results.jsonl'), tmp_path / 'results.jsonl')
  (from_log,) = plan.read_curves(tmp_path)
  assert from_log.ratio == curve.ratio and from_log.ratio_ci == curve.ratio_ci
  # A grid summary.json: one curve per finished configuration.
  grid = tmp_path / 'grid'
  grid.mkdir()
  (grid / 'summary.json').write_text(json.dumps(dict(kind='grid', summaries=[
      summary, dict(summary, status='failed', config_id='x', ratio=None)])))
  (only,) = plan.read_curves(grid)
  assert only.ratio == summary['ratio']


def test_read_predict_json():
  prediction = json.load(open(PREDICT))
  (curve,) = plan.read_curves(PREDICT)
  assert curve.source == 'predict' and curve.ratio_ci is None
  assert curve.positions == prediction['positions'] == [1, 2, 4, 8, 16]
  t_pred = prediction['t_pred_s']
  assert curve.ratio == pytest.approx([t / t_pred[0] for t in t_pred])
  assert 'h100' in curve.label


def test_read_compare_folder(tmp_path):
  comp = json.load(open(os.path.join(COMPARE, 'compare.json')))
  curves = plan.read_curves(COMPARE)
  assert [c.source for c in curves] == ['compare', 'compare']
  assert ['jax' in curves[0].label, 'torch' in curves[1].label] == [True, True]
  for curve, fw in zip(curves, comp['frameworks'].values()):
    assert curve.ratio == fw['ratio'] and curve.ratio_ci == fw['ratio_ci']
  shutil.copy(os.path.join(COMPARE, 'results.jsonl'), tmp_path / 'results.jsonl')
  assert [c.ratio for c in plan.read_curves(tmp_path)] == [c.ratio for c in curves]


def test_not_a_result(tmp_path):
  with pytest.raises(errors.ConfigError, match='is not a result'):
    plan.read_curves(tmp_path)
  (tmp_path / 'summary.json').write_text('{"kind": "other"}')
  with pytest.raises(errors.ConfigError, match='is not a result'):
    plan.read_curves(tmp_path)
  with pytest.raises(errors.ConfigError, match='is not a result'):
    plan.read_curves(tmp_path / 'missing.json')


def test_document_one_and_several(tmp_path):
  accept = plan.parse_accept('chain:0.5')
  one = plan.document([plan.plan(CURVE, accept)])
  assert {'rows', 'best', 'best_near_free', 'accept', 'draft_cost'} <= set(one)
  assert set(one['rows'][0]) >= {'positions', 'ratio', 'tokens', 'speedup',
                                 'speedup_ci'}
  several = plan.document([plan.plan(CURVE, accept)] * 2)
  assert several['accept'] == 'chain:0.5' and len(several['plans']) == 2
  assert several['plans'][0] == one


# The CLI, as a user runs it.

def test_cli_writes_plan_json_and_plot(tmp_path, cli_env):
  out = tmp_path / 'plan'
  proc = cli.run('experiments.plan', [SWEEP, PREDICT, '--accept', 'chain:0.8',
                                      '--draft_cost', '0.05', '--out', str(out)],
                 cli_env)
  assert proc.returncode == 0, proc.stderr
  doc = json.loads((out / 'plan.json').read_text())
  assert doc['accept'] == 'chain:0.8' and doc['draft_cost'] == 0.05
  sweep_plan, predict_plan = doc['plans']
  expected = plan.plan(plan.read_curves(SWEEP)[0], plan.parse_accept('chain:0.8'),
                       0.05)
  assert sweep_plan['best'] == expected.best
  assert sweep_plan['rows'] == json.loads(json.dumps(expected.rows))
  assert predict_plan['source'] == 'predict'
  assert (out / 'plan.png').stat().st_size > 1000
  assert proc.stdout.count('N* = ') == 2


BAD_CLI = {
    'alpha': ['--accept', 'chain:1.0'],
    'negative_alpha': ['--accept', 'chain:-0.2'],
    'draft_cost': ['--accept', 'chain:0.8', '--draft_cost', '-1'],
    'no_accept': [],
}


@pytest.mark.parametrize('name', sorted(BAD_CLI))
def test_cli_bad_flags(name, tmp_path, cli_env):
  proc = cli.run('experiments.plan', [SWEEP, '--out', str(tmp_path / 'o')]
                 + BAD_CLI[name], cli_env)
  assert proc.returncode == 2, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('name,text,source', [
    ('non_increasing', '1,1\n4,2\n2,1.5\n', SWEEP),
    ('no_one', '2,1.5\n4,2\n8,3\n', SWEEP),
    ('not_covering', '1,1\n2,1.5\n4,2\n', SWEEP),  # the sweep has N = 8
    ('not_a_result', '1,1\n2,1.5\n4,2\n8,3\n', DATA),
])
def test_cli_bad_table_or_source(name, text, source, tmp_path, cli_env):
  table = _table(tmp_path, text, name + '.csv')
  proc = cli.run('experiments.plan', [source, '--accept', 'table:' + table,
                                      '--out', str(tmp_path / 'o')], cli_env)
  assert proc.returncode == 2, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert proc.stderr.startswith('error: ')
  assert not (tmp_path / 'o' / 'plan.json').exists()


def test_sweep_prints_plan_line(tmp_path, cli_env):
  proc = cli.run('experiments.sweep', [
      '--module', 'dense', '--model', 'tiny', '--positions', '1,2,4',
      '--repeats', '3', '--nopredict', '--accept', 'chain:0.5',
      '--out', str(tmp_path / 'run')], cli_env)
  assert proc.returncode == 0, proc.stderr
  (line,) = [l for l in proc.stdout.splitlines() if l.startswith('plan (')]
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  expected = plan.plan(plan.curve_from_record(summary),
                       plan.parse_accept('chain:0.5'))
  assert line == plan.summary_line(expected)


def test_sweep_refuses_bad_accept_before_measuring(tmp_path, cli_env):
  proc = cli.run('experiments.sweep', ['--module', 'dense', '--model', 'tiny',
                                       '--accept', 'chain:2',
                                       '--out', str(tmp_path / 'run')], cli_env)
  assert proc.returncode == 2 and 'chain:2' in proc.stderr
  assert not (tmp_path / 'run').exists()


@cli.requires_gpu_aot
def test_predict_prints_plan_line(cli_env):
  proc = cli.run('experiments.predict', [
      '--module', 'dense', '--model', 'tiny', '--target', 'h100',
      '--positions', '1,2,4', '--accept', 'chain:0.8', '--draft_cost', '0.1'],
                 cli_env)
  assert proc.returncode == 0, proc.stderr
  (line,) = [l for l in proc.stdout.splitlines() if l.startswith('plan (')]
  assert line.startswith('plan (chain:0.8, draft cost 0.1): N* = ')


@cli.requires_gpu_aot
def test_predict_with_an_uncovered_table_still_prints_its_prediction(tmp_path,
                                                                     cli_env):
  table = _table(tmp_path, '1,1\n2,1.5\n')
  proc = cli.run('experiments.predict', [
      '--module', 'dense', '--model', 'tiny', '--target', 'h100',
      '--positions', '1,2,4', '--accept', 'table:' + table], cli_env)
  assert proc.returncode == 0, proc.stderr
  assert 'NFP_pred' in proc.stdout and 'plan (' not in proc.stdout
  assert 'has no row for N = 4' in proc.stderr
