"""Compiling blocks to optimized HLO: the target config from the spec table, the
tiling sources, deviceless compiles for every NVIDIA target, and the CPU."""

import re

import pytest

from nfp_jax import compile as compile_lib
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import targets
from tests.cli import requires_gpu_aot

T = targets.resolve


def dense(dtype='bfloat16'):
  return config.resolve('dense', 'tiny', dtype=dtype)


def test_target_config_comes_from_the_spec_table():
  for target in targets.names('gpu')[1:]:
    text = compile_lib.target_config_text(T(target))
    gpu = hardware.SPECS[target].gpu
    assert f'core_count: {gpu["core_count"]}' in text
    assert f'memory_bandwidth: {gpu["memory_bandwidth"]}' in text
    assert f'l2_cache_size: {gpu["l2_cache_size"]}' in text
    major, minor = gpu['compute_capability']
    assert f'major: {major} minor: {minor}' in text
    assert text.count('{') == text.count('}')
  assert 'ACCELERATED_FEATURES' in compile_lib.target_config_text(T('h100'))
  assert 'ACCELERATED_FEATURES' not in compile_lib.target_config_text(T('a100'))


def test_targets_include_h100_and_a100():
  assert {'h100', 'a100'} <= set(targets.names('gpu'))
  with pytest.raises(compile_lib.CompileError):
    compile_lib.target_config_text(T('cpu'))


@pytest.mark.parametrize('text, target, source, placeholder', [
    ('xla-default', 'h100', 'xla-default', True),
    ('xla-default', 'cpu', 'xla-default', False),
    ('cost-model', 'a100', 'cost-model', False),
    ('override:block_m:64 block_n:128 block_k:64 num_stages:4 num_warps:4 '
     'num_ctas:1', 'h100', 'override:block_m:64 block_n:128 block_k:64 '
     'num_stages:4 num_warps:4 num_ctas:1', False),
])
def test_parse_tiling(text, target, source, placeholder):
  tiling = compile_lib.parse_tiling(text, T(target))
  assert (tiling.source, tiling.placeholder) == (source, placeholder)


def test_cost_model_only_works_through_xla_flags():
  tiling = compile_lib.parse_tiling('cost-model', T('h100'))
  assert tiling.compiler_options == {}
  assert any('cost_model_gemm_tiling' in f for f in tiling.xla_flags)


@pytest.mark.parametrize('text, target', [
    ('cost-model', 'cpu'), ('bogus', 'h100'), ('override:block_m:x', 'h100'),
    ('override:tile:4', 'h100'), ('autotune-file:/no/such/file', 'h100'),
])
def test_bad_tiling_is_one_sentence(text, target):
  with pytest.raises(compile_lib.CompileError) as error:
    compile_lib.parse_tiling(text, T(target))
  assert '\n' not in str(error.value)


@requires_gpu_aot
@pytest.mark.parametrize('target', targets.names('gpu')[1:])
def test_deviceless_compile_per_target(target):
  compiled = compile_lib.compile_hlo(dense(), 16, T(target), 'xla-default')
  assert compiled.target == target and compiled.placeholder
  assert compiled.tiling_source == 'xla-default'
  assert compiled.device_kind == hardware.SPECS[target].description
  assert compiled.thunk_text and 'grid:' in compiled.thunk_text
  kinds = {k.kind for k in compiled.kernels()}
  assert 'triton_gemm' in kinds
  assert all(k.grid_blocks for k in compiled.kernels() if k.kind == 'triton_gemm')


@requires_gpu_aot
def test_cost_model_and_override_change_the_tiles():
  cfg = dense()
  default, cost = (compile_lib.compile_hlo_many(cfg, [1024], T('h100'), tiling)[0]
                   for tiling in ('xla-default', 'cost-model'))
  override = compile_lib.compile_hlo(
      cfg, 1024, T('h100'), 'override:block_m:64 block_n:64 block_k:32 '
      'num_stages:3 num_warps:4 num_ctas:1')
  gate = lambda c: next(k for k in c.kernels() if 'gate' in k.source_ops)
  assert (gate(default).tile_positions, gate(default).tile_features) == (8, 16)
  assert cost.tiling_source == 'cost-model' and not cost.placeholder
  assert any('cost_model' in f for f in cost.xla_flags)
  assert (gate(cost).tile_positions, gate(cost).tile_features) != (8, 16)
  assert (gate(override).tile_positions, gate(override).tile_features,
          gate(override).num_stages) == (64, 64, 3)
  assert override.compiler_options['xla_gpu_override_gemm_autotuner']


@requires_gpu_aot
def test_autotune_file_misses_are_errors_not_placeholders(tmp_path):
  autotune = tmp_path / 'autotune.pbtxt'
  autotune.write_text('version: 3\n')
  with pytest.raises(compile_lib.CompileError) as error:
    compile_lib.compile_hlo(dense(), 64, T('h100'), f'autotune-file:{autotune}')
  assert 'autotune' in str(error.value)


@requires_gpu_aot
def test_cublas_through_an_extra_option():
  compiled = compile_lib.compile_hlo(dense(), 64, T('a100'), 'xla-default',
                                     extra_options={
                                         'xla_gpu_enable_triton_gemm': False})
  assert '__cublas$lt$matmul' in compiled.hlo_text or '__cublas$gemm' in (
      compiled.hlo_text)
  assert compiled.compiler_options == {'xla_gpu_enable_triton_gemm': False}


def test_cpu_kernel_identity_per_positions(tmp_path):
  one, two = compile_lib.compile_hlo_many(dense('float32'), [1, 2], T('cpu'),
                                          dump_dir=tmp_path)
  assert {k.kind for k in one.kernels() if k.kind != 'other'} == {'cpu_gemv'}
  assert {k.kind for k in two.kernels() if k.kind != 'other'} == {'cpu_ynn'}
  functions = set(one.gemv_function_names.values())
  assert all(re.match(r'col_major_gemv_F32_\d+_\d+_', f) for f in functions)
  assert (tmp_path / 'n1').is_dir()
  assert one.cost['flops'] > 0
