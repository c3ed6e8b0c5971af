"""Deviceless XLA:TPU compiles per target (the tpu-aot extra: skipped cleanly
without it), the predict CLI on a TPU target, and the one-sentence errors."""

import importlib.util
import json

import pytest

from nfp_jax import compile as compile_lib
from nfp_jax import config
from nfp_jax import errors
from nfp_jax import targets
from tests import cli
from tests.cli import requires_tpu_aot


@requires_tpu_aot
@pytest.mark.parametrize('name,kind', [('v4', 'TPU v4'), ('v5e', 'TPU v5 lite'),
                                       ('v5p', 'TPU v5'), ('v6e', 'TPU v6 lite')])
def test_deviceless_compile_per_target(name, kind):
  cfg = config.resolve('dense', 'tiny', dtype='bfloat16')
  compiled = compile_lib.compile_hlo(cfg, 64, targets.resolve(name))
  assert compiled.device_kind == kind and compiled.is_tpu
  assert compiled.cost['optimal_seconds'] > 0 and compiled.cost['flops'] > 0
  program = compiled.program()
  assert ':T(' in compiled.hlo_text  # layouts carry the tiles
  matmuls = [f for f in program.fusions if f.dots]
  assert matmuls and all(f.estimated_cycles for f in matmuls)
  assert {'gate', 'up', 'down'} <= {op for f in matmuls for op in f.source_ops}


@requires_tpu_aot
def test_many_positions_split_over_children_keep_their_order():
  cfg = config.resolve('dense', 'tiny', dtype='bfloat16')
  positions = [1, 3, 8, 17, 64]
  compiled = compile_lib.compile_hlo_many(cfg, positions, targets.resolve('v5e'))
  assert [c.positions for c in compiled] == positions


@requires_tpu_aot
def test_predict_cli_puts_the_compiler_beside_the_principle(cli_env, tmp_path):
  out = tmp_path / 'p.json'
  done = cli.run('experiments.predict', [
      '--module', 'dense', '--model', 'tiny', '--target', 'v5e',
      '--positions', '1,8,64,256', '--out', str(out)], cli_env)
  assert done.returncode == 0, done.stderr
  assert "XLA:TPU's own cost model" in done.stdout
  assert 'Traceback' not in done.stderr and 'libtpu' not in done.stderr
  p = json.loads(out.read_text())
  assert len(p['t_compiler_s']) == len(p['t_pred_s']) == 4
  assert set(p['nfp_compiler']) == set(p['nfp_predicted'])
  assert all(t > 0 for t in p['t_compiler_s'] + p['t_cycles_s'])
  assert len(p['windows']) == 4


def test_unknown_tpu_target_is_one_sentence(cli_env):
  done = cli.run('experiments.predict', ['--target', 'v7x'], cli_env)
  assert done.returncode == 2
  last = done.stderr.strip().splitlines()[-1]
  assert 'v7x' in last and 'v5e' in last


def test_missing_tpu_extra_is_one_sentence(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name in ('libtpu', 'tokamax')
                      else real(name, *a))
  with pytest.raises(errors.ConfigError) as error:
    compile_lib.check_tpu_extra(targets.resolve('v6e'))
  assert 'tpu-aot' in str(error.value) and '\n' not in str(error.value)
  compile_lib.check_tpu_extra(targets.resolve('h100'))  # not a TPU: no check
  with pytest.raises(errors.ConfigError) as error:
    config.resolve('moe', 'tiny', moe_impl='tokamax')
  assert 'tokamax' in str(error.value) and '\n' not in str(error.value)
