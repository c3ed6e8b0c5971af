"""The principle on XLA:TPU, on hand-made fusion records with known answers."""

import pytest

from nfp_jax import hardware
from nfp_jax import hlo
from nfp_jax import hlo_tpu
from nfp_jax import predict
from nfp_jax import pricing_tpu
from nfp_jax import targets

V5E = targets.resolve('v5e')
TPU = V5E.spec.tpu  # MXU 128, sublane 8
BAL = predict.target_balance(V5E, 'bfloat16')


def matmul(rows, k, f, *, out_window=None, kernel_window=None,
           input_window=None, weight_space=0) -> hlo_tpu.Fusion:
  x = hlo.Shape('bf16', (rows, k))
  w = hlo.Shape('bf16', (k, f))
  return hlo_tpu.Fusion(
      name='fusion', kind='tpu_conv', opcode='fusion', fusion_kind='kOutput',
      source_op='up', source_ops=('up',), output_shape=hlo.Shape('bf16', (rows, f)),
      operand_shapes=(x, w), operand_spaces=(0, weight_space),
      tiles='T(8,128)(2,1)', memory_space=0,
      kernel_window_bounds=kernel_window, output_window_bounds=out_window,
      input_window_bounds=input_window,
      dots=(hlo_tpu.Dot(1, rows, k, f, k * f * 2, 'bf16'),))


def test_spec_table_holds_tpu_fields_with_sources():
  for name in ('v4', 'v5e', 'v5p', 'v6e'):
    spec = hardware.SPECS[name]
    assert spec.tpu['mxu_dim'] == (256 if name == 'v6e' else 128)
    assert spec.peak_flops['bfloat16'] > 0 and spec.memory_bandwidth > 0
    assert spec.tpu['vmem_bytes'] >= 16 * 2**20 and spec.tpu['clock_hz'] > 1e9
    assert any('Cloud TPU docs' in s for s in spec.sources)
  assert hardware.SPECS['v5e'].tpu['clock_hz'] == pytest.approx(1.503e9, rel=1e-3)


def test_rows_pad_to_the_sublane_tile_then_to_the_mxu():
  """bf16 packs pairs: 16-row tiles; fewer rows than the MXU side cost a full
  weight tile (128 row-steps)."""
  assert pricing_tpu.sublane_rows('bf16', TPU) == 16
  assert pricing_tpu.sublane_rows('f32', TPU) == 8
  for rows in (1, 16, 100, 128):
    flops, t, passes = pricing_tpu.dot_compute(
        hlo_tpu.Dot(1, rows, 4096, 4096, 0, 'bf16'), TPU, BAL.peak_flops)
    assert flops == 2 * 128 * 4096 * 4096 and passes == 1
  flops, _, passes = pricing_tpu.dot_compute(
      hlo_tpu.Dot(1, 129, 4096, 4096, 0, 'bf16'), TPU, BAL.peak_flops)
  assert flops == 2 * 144 * 4096 * 4096 and passes == 2  # 129 -> 9 tiles of 16
  flops, _, _ = pricing_tpu.dot_compute(
      hlo_tpu.Dot(1, 200, 100, 129, 0, 'bf16'), TPU, BAL.peak_flops)
  assert flops == 2 * 208 * 128 * 256  # K and F pad to the MXU side


def test_memory_bound_matmul_streams_operands_once():
  fusion = matmul(16, 4096, 14336, out_window=(2, 14), kernel_window=(512, 14),
                  input_window=(2, 32))
  priced = pricing_tpu.price_fusion(fusion, BAL, TPU)
  moved = 2 * (16 * 4096 + 4096 * 14336 + 16 * 14336)
  assert priced.bytes == moved
  assert priced.t_memory == pytest.approx(moved / BAL.bandwidth)
  assert priced.t_memory > priced.t_compute
  prologue = (512 * 14 + 2 * 32) * 8 * 128 * 2 / BAL.bandwidth
  assert priced.t_s == pytest.approx(priced.t_memory + prologue)
  assert priced.waves == 1 and priced.position_tiles == 1


def test_weights_streamed_again_per_row_window():
  """512 rows are 64 row tiles of 8; a window of 16 row tiles: 4 windows, so
  the weights come from HBM 4 times."""
  one = pricing_tpu.price_fusion(matmul(512, 1024, 1024, out_window=(64, 8)),
                                 BAL, TPU)
  four = pricing_tpu.price_fusion(matmul(512, 1024, 1024, out_window=(16, 8)),
                                  BAL, TPU)
  assert pricing_tpu.row_windows(matmul(512, 1024, 1024, out_window=(16, 8))) == 4
  assert four.bytes - one.bytes == 3 * 1024 * 1024 * 2
  assert four.waves == 4


def test_weights_in_vmem_are_not_hbm_bytes_nor_prologue():
  hbm = pricing_tpu.price_fusion(
      matmul(16, 4096, 4096, kernel_window=(512, 32), input_window=(2, 32)),
      BAL, TPU)
  vmem = pricing_tpu.price_fusion(
      matmul(16, 4096, 4096, kernel_window=(512, 32), input_window=(2, 32),
             weight_space=1), BAL, TPU)
  assert hbm.bytes - vmem.bytes == 4096 * 4096 * 2
  assert vmem.t_s < hbm.t_s


def test_compute_bound_matmul_at_the_mxu_rate():
  priced = pricing_tpu.price_fusion(matmul(8192, 8192, 8192), BAL, TPU)
  assert priced.t_compute == pytest.approx(2 * 8192**3 / 197e12)
  assert priced.t_s == pytest.approx(priced.t_compute)


def test_ragged_dot_reads_only_active_experts():
  x = hlo.Shape('bf16', (4, 1024))
  w = hlo.Shape('bf16', (8, 1024, 2048))
  kernel = hlo_tpu.Fusion(
      name='ragged', kind='tpu_custom_call', opcode='custom-call',
      fusion_kind=None, source_op='expert_up', source_ops=('expert_up',),
      output_shape=hlo.Shape('bf16', (4, 2048)), operand_shapes=(x, w),
      operand_spaces=(0, 0), tiles=None, memory_space=0,
      custom_call_target='tpu_custom_call', mosaic_tiling=(32, 1024, 384))
  priced = pricing_tpu.price_fusion(kernel, BAL, TPU)
  # 4 rows: at most 4 of the 8 experts are read.
  assert priced.bytes == 4 * 1024 * 2 + 4 * 1024 * 2048 * 2 + 4 * 2048 * 2
  assert priced.waves == 4 and priced.tiling == ((32, 1024, 384),)


def test_copy_and_elementwise_stream_their_bytes():
  copy = hlo_tpu.Fusion(
      name='copy-start', kind='tpu_copy', opcode='copy-start', fusion_kind=None,
      source_op=None, source_ops=(),
      output_shape=(hlo.Shape('bf16', (1024, 1024)), hlo.Shape('bf16', (1024, 1024)),
                    hlo.Shape('u32', ())),
      operand_shapes=(hlo.Shape('bf16', (1024, 1024)),), operand_spaces=(0,),
      tiles=None, memory_space=1)
  priced = pricing_tpu.price_fusion(copy, BAL, TPU)
  assert priced.bytes == 1024 * 1024 * 2  # read from HBM, written to VMEM
  assert priced.t_s == pytest.approx(priced.bytes / BAL.bandwidth)
  to_hbm = pricing_tpu.price_fusion(
      hlo_tpu.Fusion(**dict(copy.__dict__, memory_space=0)), BAL, TPU)
  assert to_hbm.bytes == 2 * 1024 * 1024 * 2  # read and written in HBM
  refill = pricing_tpu.price_fusion(
      hlo_tpu.Fusion(**dict(copy.__dict__, refill=True)), BAL, TPU)
  assert refill.bytes == 0 and refill.t_s == 0  # the next call's prefetch


def test_module_is_the_sum_of_its_fusions():
  fusions = [matmul(16, 4096, 4096), matmul(16, 4096, 1024)]
  point = pricing_tpu.price_module(fusions, 16, BAL, target=V5E)
  assert point.t_s == pytest.approx(sum(k.t_s for k in point.kernels))
  assert point.floor_s == 0


def test_float32_blocks_are_priced_at_the_bf16_mxu_rate():
  assert predict.target_balance(V5E, 'float32').peak_flops == 197e12


def test_cycles_at_the_spec_clock():
  program = hlo_tpu.Program('m', None, 1, (
      hlo_tpu.Fusion(name='f', kind='tpu_conv', opcode='fusion', fusion_kind=None,
                     source_op=None, source_ops=(), output_shape=None,
                     operand_shapes=(), operand_spaces=(), tiles=None,
                     memory_space=0, estimated_cycles=1_503_000),))
  assert pricing_tpu.cycles_time(program, TPU) == pytest.approx(
      1_503_000 / TPU['clock_hz'])


# The shape of XLA:TPU's chunked expert gather (mixtral-8x7b `--impl gather`
# on v5e at N=1): a loop of two iterations slices one expert's 128 columns
# into VMEM, then an in-place dynamic-update-slice writes the [2, 4096, 128]
# chunk into the [2, 4096, 14336] buffer in HBM.
_GATHER_HLO = """HloModule m

%cond (p.0: (s32[], bf16[8,4096,128])) -> pred[] {
  %p.0 = (s32[]{:T(128)}, bf16[8,4096,128]{2,1,0:T(8,128)(2,1)}) parameter(0)
  %k = s32[]{:T(128)} constant(2)
  %i = s32[]{:T(128)} get-tuple-element(%p.0), index=0
  ROOT %lt = pred[]{:T(512)} compare(%i, %k), direction=LT
}

%slice_one (a.0: bf16[8,4096,128], b.0: s32[]) -> bf16[1,4096,128] {
  %a.0 = bf16[8,4096,128]{2,1,0:T(8,128)(2,1)} parameter(0)
  %b.0 = s32[]{:T(128)} parameter(1)
  %z = s32[]{:T(128)} constant(0)
  ROOT %ds = bf16[1,4096,128]{2,1,0:T(8,128)(2,1)S(1)} dynamic-slice(%a.0, %b.0, %z, %z), dynamic_slice_sizes={1,4096,128}
}

%body (p.1: (s32[], bf16[8,4096,128])) -> (s32[], bf16[8,4096,128]) {
  %p.1 = (s32[]{:T(128)}, bf16[8,4096,128]{2,1,0:T(8,128)(2,1)}) parameter(0)
  %j = s32[]{:T(128)} get-tuple-element(%p.1), index=0
  %slab = bf16[8,4096,128]{2,1,0:T(8,128)(2,1)} get-tuple-element(%p.1), index=1
  %one = bf16[1,4096,128]{2,1,0:T(8,128)(2,1)S(1)} fusion(%slab, %j), kind=kLoop, calls=%slice_one
  %c1 = s32[]{:T(128)} constant(1)
  %next = s32[]{:T(128)} add(%j, %c1)
  ROOT %t = (s32[]{:T(128)}, bf16[8,4096,128]{2,1,0:T(8,128)(2,1)}) tuple(%next, %slab)
}

%update (buf.0: bf16[2,4096,14336], chunk.0: bf16[2,4096,128]) -> bf16[2,4096,14336] {
  %buf.0 = bf16[2,4096,14336]{1,2,0:T(8,128)(2,1)} parameter(0)
  %chunk.0 = bf16[2,4096,128]{1,2,0:T(8,128)(2,1)S(1)} parameter(1)
  %z.1 = s32[] constant(0)
  %c128 = s32[] constant(128)
  ROOT %dus = bf16[2,4096,14336]{1,2,0:T(8,128)(2,1)} dynamic-update-slice(%buf.0, %chunk.0, %z.1, %z.1, %c128)
}

ENTRY %main (w: bf16[8,4096,128], buf: bf16[2,4096,14336], chunk: bf16[2,4096,128]) -> bf16[2,4096,14336] {
  %w = bf16[8,4096,128]{2,1,0:T(8,128)(2,1)} parameter(0)
  %buf = bf16[2,4096,14336]{1,2,0:T(8,128)(2,1)} parameter(1)
  %chunk = bf16[2,4096,128]{1,2,0:T(8,128)(2,1)S(1)} parameter(2)
  %c0 = s32[]{:T(128)} constant(0)
  %init = (s32[]{:T(128)}, bf16[8,4096,128]{2,1,0:T(8,128)(2,1)}) tuple(%c0, %w)
  %loop = (s32[]{:T(128)}, bf16[8,4096,128]{2,1,0:T(8,128)(2,1)}) while(%init), condition=%cond, body=%body
  ROOT %put = bf16[2,4096,14336]{1,2,0:T(8,128)(2,1)} fusion(%buf, %chunk), kind=kLoop, calls=%update
}
"""


def test_in_place_update_and_while_loop_move_what_they_touch():
  program = hlo_tpu.read_program(_GATHER_HLO, 1)
  loop, put = [f for f in program.fusions if f.opcode in ('while', 'fusion')]
  chunk = 2 * 4096 * 128 * 2
  # In place: the 2 MB chunk (from VMEM) written, not the 235 MB buffer.
  assert put.in_place_update.dims == (2, 4096, 128)
  assert pricing_tpu.hbm_bytes(put) == chunk
  # Two iterations, each reading one expert's 1 MB slice into VMEM.
  assert loop.trip_count == 2 and len(loop.body) == 2
  assert pricing_tpu.hbm_bytes(loop) == pytest.approx(2 * 4096 * 128 * 2, rel=1e-4)  # + scalar adds


def test_row_windows_follow_the_output_layout():
  """Window bounds run over the layout's dimensions, major to minor. Attention
  at N=1 on v6e (kv 32768) writes bf16[8,128,4]{1,2,0:T(4,128)} with output
  window (8, 1, 1): its rows are dimension 2 (the 4 query heads of a group),
  one tile, one window; read as the logical dims[-2] (128) the value cache
  would be streamed 32 times. The values at N=128 on v5e,
  bf16[8,128,4,128]{3,1,2,0:T(8,128)} with window (8, 4, 16, 1) and one
  iteration, hold their 16 row tiles in one window."""
  def values(out, tiles, window):
    return hlo_tpu.Fusion(
        name='fusion', kind='tpu_conv', opcode='fusion', fusion_kind='kOutput',
        source_op='values', source_ops=('values',), output_shape=out,
        operand_shapes=(), operand_spaces=(), tiles=tiles, memory_space=1,
        output_window_bounds=window)
  n1 = values(hlo.Shape('bf16', (8, 128, 4), (1, 2, 0)), 'T(4,128)(2,1)', (8, 1, 1))
  assert pricing_tpu.row_windows(n1) == 1
  default = values(hlo.Shape('bf16', (8, 128, 4)), 'T(4,128)(2,1)', (8, 1, 1))
  assert pricing_tpu.row_windows(default) == 32
  n128 = values(hlo.Shape('bf16', (8, 128, 4, 128), (3, 1, 2, 0)), 'T(8,128)(2,1)',
                (8, 4, 16, 1))
  assert pricing_tpu.row_windows(n128) == 1
