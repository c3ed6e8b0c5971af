"""The XLA:TPU reader on real deviceless dumps (tests/data/hlo/tpu): windows,
iteration bounds and estimated_cycles read exactly as the text has them."""

import json
import pathlib

import pytest

from nfp_jax import hlo
from nfp_jax import hlo_tpu
from tests import cli

DATA = pathlib.Path(__file__).resolve().parent / 'data' / 'hlo' / 'tpu'
MANIFEST = json.loads((DATA / 'MANIFEST.json').read_text())


def read(name) -> hlo_tpu.Program:
  entry = MANIFEST[name]
  programs = hlo_tpu.read_dump(DATA / entry['file'], entry['positions'])
  assert len(programs) == 1
  text = pathlib.Path(programs[0].file).read_text()
  return hlo_tpu.read_program(text, entry['positions'], cost=entry['cost'],
                              file=programs[0].file)


def by_op(program, op):
  found = [f for f in program.fusions if op in f.source_ops and f.dots]
  assert found, (op, [f.source_ops for f in program.fusions])
  return found


def test_every_fixture_has_its_command():
  for name, entry in MANIFEST.items():
    assert (DATA / entry['file']).exists(), name
    assert entry['command'].startswith('python -m experiments.tiling'), name
    assert 'compile_hlo' in entry['made_by'] and entry['cost'], name


def test_v5e_n16_dump_windows_and_cycles():
  """N=16 on v5e: the gate matmul on its own (weights prefetched to VMEM),
  up and down in one fusion; output windows [2, 14] and [2, 32] tiles."""
  program = read('v5e_dense_n16_dump')
  assert program.file.endswith('after_codegen.txt')
  gate, = by_op(program, 'gate')
  assert gate.kind == 'tpu_conv' and gate.fusion_kind == 'kOutput'
  assert gate.kernel_window_bounds == (512, 14)
  assert gate.output_window_bounds == (2, 14)
  assert gate.input_window_bounds == (2, 32)
  assert gate.iteration_bounds == (8, 1, 1)
  assert gate.estimated_cycles == 34935
  assert gate.tiles == 'T(8,128)(2,1)' and gate.emitter == 'EmitAllBatchInSublanes'
  assert 1 in gate.operand_spaces  # the weight in VMEM (S(1))
  down_up, = by_op(program, 'down')
  assert set(down_up.source_ops) == {'down', 'up'}
  assert down_up.kernel_window_bounds == (32, 32)
  assert down_up.output_window_bounds == (2, 32)
  assert down_up.iteration_bounds == (1, 1, 56)
  assert down_up.estimated_cycles == 699737
  assert [(d.rows, d.contraction, d.features) for d in down_up.dots] == [
      (16, 4096, 14336), (16, 14336, 4096)]
  copies = [f for f in program.fusions if f.kind == 'tpu_copy']
  assert len(copies) == 1 and copies[0].memory_space == 1
  assert program.estimated_cycles == 34935 + 699737
  assert program.optimal_seconds == pytest.approx(0.0011162299197167158)
  assert program.bytes_accessed == 823398912.0


def test_v5e_n129_splits_three_matmuls_with_17_row_tiles():
  """129 rows are 17 tiles of 8: every matmul's output window holds 17."""
  program = read('v5e_dense_n129')
  windows = {f.source_op: f for f in program.fusions if f.dots}
  assert set(windows) == {'gate', 'up', 'down'}
  assert windows['down'].output_window_bounds == (17, 16)
  assert windows['down'].kernel_window_bounds == (128, 16)
  assert windows['down'].iteration_bounds == (2, 1, 14)
  assert windows['down'].estimated_cycles == 370844
  assert windows['gate'].estimated_cycles == 133004


def test_v5e_n1_is_no_matmul():
  """At N=1 XLA:TPU runs the projections as multiply-reduce fusions (no MXU)."""
  program = read('v5e_dense_n1')
  assert not any(f.dots for f in program.fusions)
  assert {'gate', 'down'} <= {op for f in program.fusions for op in f.source_ops}


def test_v6e_n256_keeps_up_and_down_in_one_fusion():
  program = read('v6e_dense_n256')
  down_up, = by_op(program, 'down')
  assert set(down_up.source_ops) == {'down', 'up'}
  assert down_up.kernel_window_bounds == (48, 32)
  assert down_up.output_window_bounds == (32, 32)
  assert down_up.estimated_cycles == 399309


def test_ragged_dot_is_a_mosaic_kernel_with_its_tiling_and_cost():
  program = read('v5e_moe_ragged_n16')
  kernels = [f for f in program.fusions if f.kind == 'tpu_custom_call'
             and f.mosaic_tiling]
  assert sorted(f.source_op for f in kernels) == ['expert_down', 'expert_gate',
                                                  'expert_up']
  gate = next(f for f in kernels if f.source_op == 'expert_gate')
  assert gate.mosaic_tiling == (32, 4096, 384)
  assert gate.custom_call_target == 'tpu_custom_call'
  # The kernel declares all 8 experts' weights as bytes accessed.
  assert gate.mosaic_cost['bytes_accessed'] == 940703776.0
  assert gate.mosaic_cost['flops'] == 2 * 32 * 4096 * 14336


def test_attention_uncosted_custom_calls_are_taken_out():
  """optimal_seconds is -1 s per uncosted custom call (ConcatBitcast) plus the
  real estimate; compiler_seconds takes the sentinels out."""
  program = read('v5e_attention_n16')
  assert program.uncosted_custom_calls == 3
  assert program.optimal_seconds < 0
  assert 0 < program.compiler_seconds < 0.01
  scores = [d for f in by_op(program, 'scores') for d in f.dots]
  # 32 query heads x 16 positions x 4096 keys x 128: GQA as a dilated conv.
  assert sum(d.flops for d in scores) >= 2 * 32 * 16 * 4096 * 128


def test_dump_folder_without_tpu_hlo_is_one_sentence(tmp_path):
  with pytest.raises(hlo.HloParseError) as error:
    hlo_tpu.read_dump(tmp_path)
  assert 'after_codegen' in str(error.value) and '\n' not in str(error.value)


def test_tiling_cli_reads_a_tpu_dump_folder(cli_env, tmp_path):
  out = tmp_path / 'tiles.json'
  done = cli.run('experiments.tiling', ['--hlo', str(DATA / 'v5e_dense_n16_dump'),
                                        '--out', str(out)], cli_env)
  assert done.returncode == 0, done.stderr
  assert '512x14' in done.stdout and '699737' in done.stdout
  module, = json.loads(out.read_text())['modules']
  assert module['program']['estimated_cycles'] == 34935 + 699737
  assert {k['kind'] for k in module['kernels']} >= {'tpu_conv', 'tpu_copy'}
