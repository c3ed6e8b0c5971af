"""experiments.report merges result folders and refuses folders that are not."""

import json

import pytest

from tests.cli import run


@pytest.fixture(scope='module')
def shards(tmp_path_factory, cli_env):
  root = tmp_path_factory.mktemp('shards')
  env = cli_env
  grid = ['--module', 'dense,attention', '--model', 'tiny', '--positions', '1,2,4',
          '--repeats', '3', '--kv_len', '8', '--num_shards', '2', '--nopredict']
  for index in (0, 1):
    proc = run('experiments.sweep', grid + ['--shard_index', str(index), '--out',
                                            str(root / f'shard{index}')], env)
    assert proc.returncode == 0, proc.stderr
  return root, env


def test_merge_two_shards(shards):
  root, env = shards
  proc = run('experiments.report', [str(root / 'shard0'), str(root / 'shard1'),
                                    '--out', str(root / 'report')], env)
  assert proc.returncode == 0, proc.stderr
  report = json.loads((root / 'report' / 'report.json').read_text())
  assert sorted(r['module'] for r in report['rows']) == ['attention', 'dense']
  assert all(r['backend'] == 'cpu' and set(r['nfp']) == {'0.05', '0.1', '0.2'}
             for r in report['rows'])
  table = (root / 'report' / 'report.md').read_text()
  assert table.count('| cpu |') == 2
  assert list((root / 'report').glob('ratio-cpu-*.png'))


def test_same_folder_twice_counts_once(shards):
  root, env = shards
  proc = run('experiments.report', [str(root / 'shard0')] * 2 +
             ['--out', str(root / 'report2')], env)
  assert proc.returncode == 0, proc.stderr
  assert len(json.loads((root / 'report2' / 'report.json').read_text())['rows']) == 1


def test_refuses_a_folder_that_is_not_results(shards, tmp_path):
  root, env = shards
  (tmp_path / 'results.jsonl').write_text('{"kind": "point"}\n')
  for folder in (str(tmp_path / 'missing'), str(tmp_path)):
    proc = run('experiments.report', [str(root / 'shard0'), folder, '--out',
                                      str(tmp_path / 'r')], env)
    assert proc.returncode == 2
    assert 'is not a results folder' in proc.stderr
    assert 'Traceback' not in proc.stderr
