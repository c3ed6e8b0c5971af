"""The sweep CLI on `tiny`: files, fields, bad inputs (exit 2, one sentence)."""

import json

import pytest

from tests import cli


def sweep(args, env, timeout=600):
  return cli.run('experiments.sweep', args, env, timeout)


@pytest.fixture(scope='module')
def env(cli_env):
  return cli_env


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, env):
  out = tmp_path_factory.mktemp('sweep') / 'run'
  proc = sweep(['--module', 'moe', '--model', 'tiny', '--positions', '1,2,4,8',
                '--repeats', '4', '--routing', 'uniform', '--out', str(out)], env)
  assert proc.returncode == 0, proc.stderr
  return out, proc


def test_files_and_fields(tiny_run):
  out, proc = tiny_run
  records = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]
  points = [r for r in records if r['kind'] == 'point']
  summaries = [r for r in records if r['kind'] == 'summary']
  assert [p['positions'] for p in points] == [1, 2, 4, 8]
  assert len(summaries) == 1
  assert {r['config_id'] for r in records} == {summaries[0]['config_id']}
  assert all(len(p['samples_s']) == 4 and p['cost_analysis'] for p in points)
  summary = json.loads((out / 'summary.json').read_text())
  for key in ('positions', 't_median_s', 'ratio', 'ratio_ci', 't1_roofline_fraction',
              'nfp', 'n_idle', 'n_idle_overprediction', 'hardware', 'provenance'):
    assert key in summary, key
  assert set(summary['nfp']) == {'0.05', '0.1', '0.2'}
  assert summary['positions'] == [1, 2, 4, 8]
  assert summary['ratio'][0] == 1.0
  assert summary['hardware']['source'] == 'microbenchmark'
  for key in ('jax', 'jaxlib', 'flax', 'backend', 'device', 'git_revision', 'seed'):
    assert key in summary['provenance']
  assert summary['config']['routing'] == 'uniform'
  # The principle's prediction on the local backend rides along.
  assert set(summary['nfp_predicted']) == {'0.05', '0.1', '0.2'}
  assert len(summary['t_pred_s']) == 4 and summary['prediction']['target'] == 'cpu'
  assert 'predicted (principle)' in proc.stdout
  assert (out / 'ratio.png').stat().st_size > 1000
  assert 'NFP(0.1)' in proc.stdout and 'N_idle(0.1)' in proc.stdout


def test_rerun_skips_finished_configuration(tiny_run, env):
  out, _ = tiny_run
  before = (out / 'results.jsonl').read_text()
  proc = sweep(['--module', 'moe', '--model', 'tiny', '--positions', '1,2,4,8',
                '--repeats', '4', '--routing', 'uniform', '--out', str(out)], env)
  assert proc.returncode == 0, proc.stderr
  assert 'already finished' in proc.stderr
  assert (out / 'results.jsonl').read_text() == before


BAD = [
    (['--module', 'conv'], 'Unknown module'),
    (['--model', 'gpt5'], 'Unknown model preset'),
    (['--impl', 'sparse'], 'Unknown MoE implementation'),
    (['--routing', 'random'], 'Unknown routing'),
    (['--module', 'attention', '--mask', 'sliding'], 'Unknown mask'),
    (['--positions', '0,1,2'], 'at least 1'),
    (['--positions', '1,4,2'], 'strictly increasing'),
    (['--positions', '1,2,2'], 'strictly increasing'),
    (['--tolerance', '1.5'], '--tolerance'),
    (['--tolerance', '0'], '--tolerance'),
    (['--module', 'attention', '--kv_len', '0'], '--kv_len'),
    (['--top_k', '9', '--model', 'tiny'], '--top_k'),
    (['--dtype', 'int4'], 'Unsupported dtype'),
    (['--scale', '0.001', '--model', 'tiny'], 'zero'),
    (['--repeats', 'many'], 'repeats'),
    (['--out', '/proc/nfp_results'], 'Cannot write'),
    (['--routing', 'trace:/no/such/trace.npy', '--model', 'tiny'],
     'Cannot read routing trace'),
    (['--module', 'linear', '--d_model', '64'], 'needs its widths'),
    (['--module', 'dense', '--model', 'llama3-8b', '--d_ff', '2000000'],
     'GiB available'),
]


@pytest.mark.parametrize('args,message', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input(args, message, tiny_run, env):
  out, _ = tiny_run
  before = (out / 'results.jsonl').read_text()
  if '--out' not in args:
    args = args + ['--out', str(out)]
  proc = sweep(args, env, timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr
  error_lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(error_lines) == 1
  assert (out / 'results.jsonl').read_text() == before
