"""Grids from list-valued flags, deterministic sharding, and kill-and-resume."""

import json
import pathlib
import re
import signal
import subprocess
import sys
import time

from absl import flags
import pytest

from experiments import sweep  # pylint: disable=unused-import  (defines the flags)
from experiments import common
from nfp_jax import boundary
from nfp_jax import config
from nfp_jax import errors
from tests import cli

FLAGS = flags.FLAGS


@pytest.fixture
def parse_flags():
  def parse(*args):
    FLAGS.unparse_flags()
    FLAGS(['sweep'] + list(args))
  yield parse
  FLAGS.unparse_flags()


def test_list_flags_form_a_grid(parse_flags):
  parse_flags('--module', 'dense,moe', '--model', 'tiny,olmoe-1b-7b',
              '--dtype', 'bfloat16,float32')
  configs = common.block_configs('cpu')
  assert len(configs) == 8
  assert {(c.module, c.preset, c.dtype) for c in configs} == {
      (m, p, d) for m in ('dense', 'moe') for p in ('tiny', 'olmoe-1b-7b')
      for d in ('bfloat16', 'float32')}
  assert len({c.config_id([1, 2]) for c in configs}) == 8


def test_dense_ignores_moe_axes_without_duplicates(parse_flags):
  parse_flags('--module', 'dense', '--model', 'tiny', '--impl', 'gather,ragged')
  # The implementation is part of the config even if dense does not use it.
  assert len(common.block_configs('cpu')) == 2


@pytest.mark.parametrize('num_shards', [1, 2, 3, 5])
def test_every_configuration_in_exactly_one_shard(parse_flags, num_shards):
  args = ['--module', 'dense,moe,attention', '--model', 'tiny',
          '--kv_len', '8,16', '--dtype', 'float32,bfloat16']
  parse_flags(*args)
  grid = [c.config_id([1]) for c in common.block_configs('cpu')]
  seen = []
  for index in range(num_shards):
    parse_flags(*args, '--shard_index', str(index), '--num_shards', str(num_shards))
    seen += [c.config_id([1]) for c in common.shard(common.block_configs('cpu'))]
  assert sorted(seen) == sorted(grid) and len(set(seen)) == len(grid)


def test_bad_shard(parse_flags):
  parse_flags('--shard_index', '2', '--num_shards', '2')
  with pytest.raises(common.UsageError, match='shard_index'):
    common.shard([1, 2])


def test_sigkill_then_resume(tmp_path, cli_env):
  out = tmp_path / 'grid'
  env = cli_env
  args = [sys.executable, '-m', 'experiments.sweep', '--module',
          'dense,moe,attention', '--model', 'tiny', '--positions', '1,2,4',
          '--repeats', '40', '--kv_len', '64', '--nopredict', '--out', str(out)]
  proc = subprocess.Popen(args, cwd=cli.REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  log = out / 'results.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline:
    if log.exists() and '"summary"' in log.read_text():
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  summaries_before = log.read_text().count('"kind": "summary"')
  assert 1 <= summaries_before < 3, 'the kill should land inside the grid'

  done = subprocess.run(args, cwd=cli.REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr
  assert done.stderr.count('already finished') == summaries_before
  lines = log.read_text().splitlines()
  records = [json.loads(line) for line in lines]  # no torn line
  summaries = [r['config_id'] for r in records if r['kind'] == 'summary']
  assert len(summaries) == 3 and len(set(summaries)) == 3
  for config_id in summaries:
    points = [r['positions'] for r in records
              if r['kind'] == 'point' and r['config_id'] == config_id]
    assert points == [1, 2, 4]
  grid = json.loads((out / 'summary.json').read_text())
  assert sorted(s['config_id'] for s in grid['summaries']) == sorted(summaries)
  for config_id in summaries:
    assert (out / f'summary-{config_id}.json').exists()


@pytest.mark.parametrize('flagfile', sorted(
    (pathlib.Path(cli.REPO) / 'experiments' / 'configs').glob('*.flags')),
    ids=lambda p: p.name)
def test_study_flagfiles_name_their_command_and_parse(flagfile, cli_env):
  header = flagfile.read_text()
  module = re.search(r'python -m (experiments\.\w+) --flagfile=', header).group(1)
  assert f'--flagfile=experiments/configs/{flagfile.name}' in header
  if module == 'experiments.compare':
    pytest.importorskip('torch', reason='the torch extra is not installed')
  proc = cli.run(module, [f'--flagfile={flagfile}', '--only_check_args'], cli_env)
  assert proc.returncode == 0, proc.stderr
  if module == 'experiments.sweep':
    FLAGS.unparse_flags()
    FLAGS(['sweep', f'--flagfile={flagfile}'])
    assert len(common.block_configs('cpu')) >= 2
    FLAGS.unparse_flags()


def test_library_grid_takes_plain_lists():
  configs = config.grid(['dense', 'moe'], models=['tiny'], dtypes=['auto'],
                        platform='cpu', kv_lens=[8, 16])
  assert {c.dtype for c in configs} == {'float32'}
  assert len(configs) == 4 and len(set(configs)) == 4
  default = config.grid(['model'])
  assert default[0].preset == config.DEFAULT_MODELS['model']
  assert default[0].scale == config.DEFAULT_SCALES['model']
  assert default[0].n_layers == config.DEFAULT_OVERRIDES['model']['n_layers']
  named = config.grid(['model'], models=['tiny'])
  assert named[0].scale == 1.0 and named[0].n_layers == config.resolve(
      'model', 'tiny').n_layers
  assert config.grid(['dense'], dtypes=['auto'], platform='gpu')[0].dtype == 'bfloat16'


def test_linear_needs_both_widths_without_a_preset():
  with pytest.raises(config.ConfigError, match='--d_ff'):
    config.grid(['linear'], overrides={'d_model': 256})
  (cfg,) = config.grid(['linear'], overrides={'d_model': 256, 'd_ff': 512})
  assert (cfg.d_model, cfg.d_ff, cfg.scale) == (256, 512, 1.0)
  (named,) = config.grid(['linear'], models=['llama3-8b'])
  assert (named.d_model, named.d_ff) == (4096, 14336)


def test_library_shard_is_round_robin():
  items = list(range(7))
  shards = [config.shard(items, i, 3) for i in range(3)]
  assert shards[0] == [0, 3, 6] and sorted(sum(shards, [])) == items


def test_positions_and_taus_checks():
  assert boundary.check_positions([2, 4]) == [1, 2, 4]
  for bad in ([], [0, 1], [1, 4, 2], [1, 2, 2]):
    with pytest.raises(errors.ConfigError):
      boundary.check_positions(bad)
  assert boundary.taus(0.15) == (0.05, 0.1, 0.15, 0.2)
  with pytest.raises(errors.ConfigError):
    boundary.taus(1.0)
