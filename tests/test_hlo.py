"""The HLO reader on real fixtures (tests/data/hlo, made by
scripts/make_hlo_fixtures.py through nfp_jax.compile), on malformed input, and
the tiling CLI reading a dump it has never seen."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

from nfp_jax import hardware
from nfp_jax import hlo
from nfp_jax import pricing_gpu

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO / 'tests' / 'data' / 'hlo'
MANIFEST = json.loads((DATA / 'MANIFEST.json').read_text())


def read(name):
  entry = MANIFEST[name]
  modules = hlo.read_dump(DATA / entry['file'], entry['positions'])
  assert len(modules) == 1
  return modules[0]


def gemms(module):
  return {k.name: k for k in module.kernels if k.kind != 'other'}


def by_op(module, op):
  found = [k for k in module.kernels if k.kind != 'other' and op in k.source_ops]
  assert found, (op, [k.source_ops for k in module.kernels])
  return found[0]


def test_every_fixture_has_its_command():
  for name, entry in MANIFEST.items():
    assert (DATA / entry['file']).exists(), name
    assert entry['command'].startswith('python -m experiments.tiling'), name
    assert 'compile_hlo' in entry['made_by'], name


def test_fixtures_stay_small():
  for path in DATA.rglob('*'):
    if path.is_file():
      assert path.stat().st_size < 200_000, path


def test_cpu_gemv_at_one_with_llvm_tile():
  module = read('cpu_dense_n1_dump')
  assert module.platform == 'cpu'
  kernels = gemms(module)
  assert sorted(k.source_op for k in kernels.values()) == ['down', 'gate', 'up']
  for kernel in kernels.values():
    assert kernel.kind == 'cpu_gemv'
    assert kernel.llvm_function.startswith('col_major_gemv_F32_8_8_')
    assert (kernel.tile_features, kernel.block_k) == (8, 8)
  down = by_op(module, 'down')
  # tiny: d_model 64, d_ff 128: the down GEMV makes 64 outputs from 128 inputs.
  assert down.llvm_function.startswith('col_major_gemv_F32_8_8_64_128')
  assert down.output_shape.dims == (1, 64)


def test_cpu_ynn_from_two_positions():
  module = read('cpu_dense_n8')
  kinds = {k.source_op: k.kind for k in gemms(module).values()}
  assert kinds == {'gate': 'cpu_ynn', 'up': 'cpu_ynn', 'down': 'cpu_ynn'}
  gate = by_op(module, 'gate')
  assert gate.positions_operand == 'lhs' and gate.positions_dim == 0
  assert gate.dot_lhs.dims == (8, 64) and gate.dot_rhs.dims == (64, 128)


def test_cpu_ragged_dot_rows_are_positions_times_top_k():
  module = read('cpu_moe_ragged_n4')
  expert_gate = by_op(module, 'expert_gate')
  assert expert_gate.kind == 'cpu_ynn'
  # tiny: top_k 2, so 4 positions are 8 sorted rows.
  assert expert_gate.output_shape.dims[expert_gate.positions_dim] == 8


def test_gpu_gemv_reduce_at_one():
  for name in ('h100_dense_n1', 'a100_dense_n1'):
    module = read(name)
    kinds = [k.kind for k in gemms(module).values()]
    assert kinds == ['gpu_gemv_reduce', 'gpu_gemv_reduce'], name
    # gate and up run in one multi-output reduce fusion.
    assert set(by_op(module, 'gate').source_ops) == {'gate', 'up'}


def test_operand_swap_and_split_k():
  module = read('h100_dense_n64')
  gate = by_op(module, 'gate')
  # XLA put the positions on the right-hand side of the gate+up dot ...
  assert gate.positions_operand == 'rhs'
  assert gate.dot_rhs.dims == (64, 64) and gate.dot_lhs.dims == (64, 256)
  # ... and output_tiles (8, 16) of the [N, 2*d_ff] fusion output put 8 along N.
  assert gate.output_shape.dims == (64, 256)
  assert (gate.tile_positions, gate.tile_features) == (8, 16)
  assert gate.source_ops == ('gate', 'up')
  down = by_op(module, 'down')
  assert down.positions_operand == 'lhs'
  assert down.output_shape.dims == (8, 64, 64)
  assert (down.split_k, down.split_k_dim, down.positions_dim) == (8, 0, 1)
  assert (down.tile_positions, down.tile_features, down.block_k) == (16, 8, 16)
  assert (down.num_warps, down.num_stages, down.num_ctas) == (2, 1, 1)
  reducer = next(k for k in module.kernels if k.split_k_of == down.name)
  assert reducer.kind == 'other'


def test_tile_changes_with_positions_under_the_cost_model():
  small = by_op(read('h100_dense_n16_cost'), 'gate')
  large = by_op(read('h100_dense_n1024_cost_dump'), 'gate')
  assert (small.tile_positions, small.tile_features) == (8, 16)
  assert (large.tile_positions, large.tile_features) == (32, 64)
  assert large.num_warps == 4


def test_thunk_sequence_gives_grids():
  module = read('h100_dense_n1024_cost_dump')
  gate, down = by_op(module, 'gate'), by_op(module, 'down')
  # [1024, 256] in 32x64 tiles is 32*4 = 128 blocks; [1024, 64] in 16x16: 256.
  assert gate.grid == (128, 1, 1) and gate.grid_blocks == 128
  assert down.grid_blocks == 256
  assert gate.threads_per_block == 32 * gate.num_warps
  h100 = hardware.SPECS['h100']
  assert pricing_gpu.waves(gate, h100) == 1
  small = dataclasses.replace(h100, sm_count=100,
                              gpu=dict(h100.gpu, threads_per_core_limit=128))
  assert pricing_gpu.waves(gate, small) == 2


def test_cublas_custom_call():
  module = read('h100_dense_n64_cublas')
  kinds = sorted(k.kind for k in gemms(module).values())
  assert kinds == ['cublas', 'cublas']
  gate = by_op(module, 'gate')
  assert gate.tile_positions is None and gate.split_k is None
  assert gate.dot_dimension_numbers['lhs_contracting_dims'] == [1]
  assert 'selected_algorithm' in gate.unknown_config['gemm_backend_config']


def test_ragged_dot_is_a_dense_dot_over_all_experts():
  module = read('h100_moe_ragged_n16_cost')
  expert_gate = by_op(module, 'expert_gate')
  assert expert_gate.kind == 'triton_gemm'
  # 16 positions x top_k 2 = 32 rows. The weights of all E=4 experts are read
  # as one [E*d_model, d_ff] = [256, 128] operand (gate and up side by side) and
  # every row is contracted over all E*d_model = 256 (split-K 8 x 32): a dense
  # dot over all experts on masked activations, not a grouped kernel.
  assert expert_gate.source_ops == ('expert_gate', 'gate', 'up')
  weights = [s.dims for s in expert_gate.operand_shapes if len(s.dims) == 2]
  assert weights == [(4 * 64, 128), (4 * 64, 128)]
  rows = expert_gate.operand_shapes[0].dims
  assert rows[0] == 32 and rows[1] * rows[2] == 4 * 64
  assert expert_gate.split_k == 8
  assert expert_gate.output_shape.dims[expert_gate.positions_dim] == 32
  assert not any(k.opcode == 'ragged-dot' for k in module.kernels)


def test_attention_softmax_triton_fusion():
  module = read('h100_attention_dpa_n16_cost')
  softmax = [k for k in module.kernels if k.kind == 'triton_fusion']
  assert len(softmax) == 1
  assert softmax[0].num_warps is not None
  assert softmax[0].fusion_kind == '__triton'
  assert by_op(module, 'qkv').kind == 'triton_gemm'


def test_unknown_backend_config_keys_are_kept():
  gate = by_op(read('h100_dense_n64'), 'gate')
  assert gate.unknown_config['operation_queue_id'] == '0'
  block = gate.unknown_config['fusion_backend_config']['block_level_fusion_config']
  assert 'is_tma_allowed' in block and 'output_tiles' not in block


def test_json_round_trip():
  module = read('h100_dense_n64')
  payload = json.loads(json.dumps(module.to_dict()))
  assert payload['kernels'][0]['output_shape']['dims']


@pytest.mark.parametrize('text', [
    '', 'hello world', '{"modules": []}', 'HloModule m\n\n%c (p: f32[]) -> f32[] {\n',
    'HloModule m\n\n%c (p: f32[]) -> f32[] {\n  ROOT %p = f32[] parameter(0)\n}\n',
])
def test_malformed_input_raises_one_error(text):
  with pytest.raises(hlo.HloParseError) as error:
    hlo.read_kernels(text)
  assert '\n' not in str(error.value)


def test_read_dump_rejects_folders_without_hlo(tmp_path):
  with pytest.raises(hlo.HloParseError):
    hlo.read_dump(tmp_path)
  with pytest.raises(hlo.HloParseError):
    hlo.read_dump(tmp_path / 'missing')


def _cli(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'experiments.tiling'] + args,
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


def test_cli_reads_a_dump_folder(tmp_path):
  out = tmp_path / 'tiles.json'
  proc = _cli(['--hlo', str(DATA / 'h100_dense_n1024_cost_dump'), '--target',
               'h100', '--out', str(out)])
  assert proc.returncode == 0, proc.stderr
  assert 'triton_gemm' in proc.stdout
  modules = json.loads(out.read_text())['modules']
  assert modules[0]['positions'] == 1024
  gate = next(k for k in modules[0]['kernels'] if 'gate' in k['source_ops'])
  assert (gate['tile_positions'], gate['grid_blocks']) == (32, 128)


def test_cli_bad_input_is_one_sentence_exit_2(tmp_path):
  junk = tmp_path / 'junk.txt'
  junk.write_text('not hlo at all\n')
  proc = _cli(['--hlo', str(junk)])
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'not HLO' in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr
