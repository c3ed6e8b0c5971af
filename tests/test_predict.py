"""The principle's predictor: pricing real HLO kernels, the binding mechanism,
the probe's reference curves, composition, scoring, and the CLIs."""

import dataclasses
import json
import math
import pathlib

import pytest

from nfp_jax import compile as compile_lib
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import hlo
from nfp_jax import predict
from nfp_jax import pricing_gpu
from nfp_jax import principle
from nfp_jax import targets
from tests import cli
from tests.cli import requires_gpu_aot

DATA = pathlib.Path(__file__).parent / 'data'
H100 = hardware.spec_balance('h100', 'bfloat16')
H100_SPEC = hardware.SPECS['h100']
CPU = hardware.Balance(name='test-cpu', dtype='float32', peak_flops=2e11,
                       bandwidth=4e10, source='test', call_floor_s=5e-6,
                       kernel_overhead_s=1e-6, fault_bandwidth=3e9,
                       fresh_threshold_bytes=32 * 2**20)


def fixture_kernels(name, positions):
  return hlo.read_kernels((DATA / 'hlo' / name).read_text(), positions)


def triton_gemm(name='h100_dense_n16_cost.txt', positions=16):
  return next(k for k in fixture_kernels(name, positions)
              if k.kind == 'triton_gemm' and k.tile_positions)


def test_triton_gemm_is_priced_from_its_tile_grid():
  kernel = triton_gemm()
  priced, launches = pricing_gpu.price_kernel(kernel, H100_SPEC)
  rows, features, contraction, batch, splits = principle._dot_sizes(kernel)  # pylint: disable=protected-access
  assert rows == 16 and launches == 1
  exact = 2.0 * rows * features * contraction * batch * splits
  assert priced.flops >= exact
  assert priced.position_tiles == math.ceil(rows / kernel.tile_positions)
  assert priced.t_s >= max(priced.t_memory, priced.t_compute)
  assert priced.tiling == ('triton', kernel.tile_positions, kernel.tile_features, splits)


def test_padding_steps_at_the_tile_boundary():
  kernel = triton_gemm()
  tile = kernel.tile_positions
  out = kernel.output_shape
  def with_rows(rows):
    dims = list(out.dims)
    dims[kernel.positions_dim] = rows
    k = dataclasses.replace(kernel, output_shape=dataclasses.replace(out, dims=tuple(dims)),
                            grid_blocks=None)
    return pricing_gpu.price_kernel(k, H100_SPEC)[0]
  inside, full, over = with_rows(1), with_rows(tile), with_rows(tile + 1)
  assert inside.t_compute == full.t_compute  # rows inside the first tile are free
  assert over.position_tiles == 2 and over.t_compute >= full.t_compute
  assert over.flops == 2 * full.flops  # padded to two tiles


def test_cublas_and_other_kernels_on_a_gpu():
  kernels = fixture_kernels('h100_dense_n64_cublas.txt', 64)
  gemm = next(k for k in kernels if k.kind == 'cublas')
  priced, _ = pricing_gpu.price_kernel(gemm, H100_SPEC)
  assert priced.tiling[0] in ('cublas', 'gemv')  # the documented tile rule
  other = next(k for k in kernels if k.kind not in principle.GEMM_KINDS)
  streamed, launches = pricing_gpu.price_kernel(other, H100_SPEC)
  c = H100_SPEC.pricing
  assert launches == 1
  assert streamed.t_s == pytest.approx(
      pricing_gpu.fill_s(H100_SPEC, pricing_gpu.kernel_bytes(other)) +
      pricing_gpu.kernel_bytes(other) /
      (H100_SPEC.memory_bandwidth * c['hbm_efficiency']))


def test_split_k_reduce_reads_its_partials_whole():
  # The example: a loop fusion that sums f32[4,72,4096] partials.
  partials, out = hlo.Shape('f32', (4, 72, 4096)), hlo.Shape('bf16', (72, 4096))
  reduce = hlo.Kernel('loop_reduce_fusion', 'up', 'other', 'fusion', 'up',
                      operand_shapes=(partials,), output_shape=out,
                      fusion_kind='kLoop', split_k_of='gemm_fusion_dot')
  assert pricing_gpu.kernel_bytes(reduce) == 4 * 72 * 4096 * 4 + 72 * 4096 * 2
  plain = dataclasses.replace(reduce, split_k_of=None)  # a gather-like loop fusion
  assert pricing_gpu.kernel_bytes(plain) == 2 * 72 * 4096 * 2


def test_gather_like_kernels_count_what_they_write():
  kernels = fixture_kernels('cpu_moe_ragged_n4.txt', 4)
  for k in kernels:
    if k.kind not in principle.GEMM_KINDS and k.fusion_kind == 'kLoop':
      out = principle.shape_bytes(k.output_shape)
      assert principle.kernel_bytes(k) <= out * (1 + len(k.operand_shapes))


def synthetic_reference(k, f, fixed=5e-6, per_element=1e-10, positions=(1, 2, 4, 8)):
  """A reference curve with a known law: T(N) = fixed + per_element * N*K*F
  (the GEMV at N=1, cpu_ynn from N=2)."""
  return dict(dtype='float32', contraction=k, features=f, positions=list(positions),
              t_median_s=[fixed + per_element * n * k * f for n in positions],
              kinds=['cpu_gemv'] + ['cpu_ynn'] * (len(positions) - 1))


SYNTHETIC_PROBE = {'references': [synthetic_reference(k, f) for k, f in (
    (256, 256), (256, 1024), (1024, 1024), (4096, 4096), (128, 32768))]}


def test_reference_time_keeps_the_fixed_part_and_scales_the_rest():
  ref = lambda rows, k, f, kind='cpu_ynn': principle.reference_time(
      SYNTHETIC_PROBE, kind, 'float32', rows, k, f)
  law = lambda rows, k, f: 5e-6 + 1e-10 * rows * k * f
  # A GEMM of another size is priced by the known law: its fixed part kept.
  for rows, k, f in ((4, 64, 64), (2, 512, 512), (8, 2048, 8192), (6, 3000, 3000),
                     (12, 4096, 4096), (4, 128, 65536)):
    assert ref(rows, k, f) == pytest.approx(law(rows, k, f), rel=1e-9)
  # A small GEMM costs at least the fixed part (not shrunk with its size).
  assert ref(2, 16, 16) >= 5e-6
  # A batched call (8 heads) pays the fixed part once.
  batched = principle.reference_time(SYNTHETIC_PROBE, 'cpu_ynn', 'float32', 4, 128,
                                     2048, batch=8)
  assert batched == pytest.approx(5e-6 + 8 * 1e-10 * 4 * 128 * 2048)
  assert ref(1, 1024, 1024, kind='cpu_gemv') == pytest.approx(law(1, 1024, 1024))
  assert ref(1, 1024, 1024) == pytest.approx(law(2, 1024, 1024))  # nearest N of the kind
  assert principle.reference_time(SYNTHETIC_PROBE, 'cpu_dot', 'float32', 1, 10, 10) is None


def test_fixed_part_is_zero_with_one_size_and_the_shape_is_the_nearest():
  one = {'references': [synthetic_reference(1000, 1000, fixed=0.0)]}
  # Without a second size there is no fixed part: the curve scales whole.
  assert principle.reference_time(one, 'cpu_ynn', 'float32', 4, 2000, 1000) == (
      pytest.approx(2 * 1e-10 * 4 * 1e6))
  thin = synthetic_reference(128, 32768, fixed=1e-3)  # a slower thin kernel
  probe = {'references': SYNTHETIC_PROBE['references'][:4] + [thin]}
  fixed = principle.fixed_part(probe['references'], 'cpu_ynn', 4)
  assert fixed == pytest.approx(5e-6)  # from the two smallest sizes
  # A thin GEMM is priced from the thin reference, not the square ones.
  got = principle.reference_time(probe, 'cpu_ynn', 'float32', 4, 128, 16384)
  thin_t = 1e-3 + 1e-10 * 4 * 128 * 32768
  assert got == pytest.approx(fixed + (thin_t - fixed) / 2)


def test_fresh_buffers_fault_as_one_block_above_the_threshold():
  small = dict(temp_size_in_bytes=16 * 2**20, output_size_in_bytes=2**20)
  assert principle.fresh_buffer_time(small, CPU) == 0.0
  large = dict(temp_size_in_bytes=45 * 2**20, output_size_in_bytes=2**20)
  assert principle.fresh_buffer_time(large, CPU) == pytest.approx(45 * 2**20 / 3e9)
  assert principle.fresh_buffer_time(large, H100) == 0.0  # no fault model on a GPU


def kernel_time(op, kind, t, tiles=None, waves=None, tiling=()):
  return principle.KernelTime(op, op, kind, 0.0, 0.0, t, 0.0, t, tiles, waves, tiling)


def point(n, kernels, floor=0.0, alloc=0.0):
  return principle.CurvePoint(n, tuple(kernels), floor, alloc,
                              floor + alloc + sum(k.t_s for k in kernels))


@pytest.mark.parametrize('after,expected', [
    (kernel_time('gate', 'cpu_ynn', 2.0), 'kernel_switch'),
    (kernel_time('gate', 'cpu_gemv', 2.0, waves=2), 'waves'),
    (kernel_time('gate', 'cpu_gemv', 2.0, tiles=2), 'tile_boundary'),
    (kernel_time('gate', 'cpu_gemv', 2.0, tiles=1), 'resource'),
])
def test_binding_mechanism(after, expected):
  before = kernel_time('gate', 'cpu_gemv', 1.0, tiles=1, waves=1 if expected == 'waves' else None)
  points = [point(1, [before]), point(2, [after])]
  assert principle.binding_mechanism(points, 1, 2) == expected
  assert principle.binding_mechanism(points, 2, None) is None


def test_overhead_binds_when_fixed_costs_dominate():
  points = [point(1, [kernel_time('o', 'cpu_gemv', 1.0)], floor=2.0),
            point(2, [kernel_time('o', 'cpu_ynn', 2.0)], floor=2.0)]
  assert principle.binding_mechanism(points, 1, 2) == 'overhead'


def test_cpu_prediction_and_model_composition():
  cfg = config.resolve('model', 'tiny', dtype='float32', routing='uniform')
  one = predict.predict(cfg, [1, 2, 4], target=targets.resolve('cpu'), balance=CPU,
                        probe=SYNTHETIC_PROBE)
  deeper = predict.predict(dataclasses.replace(cfg, n_layers=4), [1, 2, 4],
                           target=targets.resolve('cpu'), balance=CPU,
                           probe=SYNTHETIC_PROBE)
  assert one.composition == 'layer x 2 + head'
  assert set(one.nfp_predicted) == {'0.05', '0.1', '0.2'}
  assert all(m in principle.MECHANISMS + (None,) for m in one.binding_mechanism.values())
  assert all(d > o for d, o in zip(deeper.t_pred_s, one.t_pred_s))
  assert one.hardware['source'] == 'test' and one.tiling_source == 'xla-default'


@requires_gpu_aot
def test_h100_prediction_from_the_spec_table():
  cfg = config.resolve('dense', 'tiny', dtype='bfloat16')
  p = predict.predict(cfg, [1, 16, 64], target=targets.resolve('h100'),
                      tiling='cost-model')
  assert p.hardware['source'] == 'spec' and p.hardware['ridge'] == pytest.approx(295, rel=0.01)
  assert p.tiling_source == 'cost-model' and not p.placeholder
  assert p.n_idle['0.1'] > 64 and len(p.t_pred_s) == 3


@requires_gpu_aot
def test_predict_cli(tmp_path, cli_env):
  out = tmp_path / 'p.json'
  proc = cli.run('experiments.predict', ['--module', 'dense', '--model', 'tiny',
                                         '--target', 'a100', '--positions', '1,16,64',
                                         '--out', str(out)], cli_env)
  assert proc.returncode == 0, proc.stderr
  p = json.loads(out.read_text())
  for key in ('positions', 't_pred_s', 'nfp_predicted', 'nfp_resource', 'n_idle',
              'binding_mechanism', 'tiling_source', 'hardware'):
    assert key in p
  assert 'NFP_pred' in proc.stdout
  bad = cli.run('experiments.predict', ['--target', 'tpu9'], cli_env)
  assert bad.returncode == 2 and 'Unknown --target' in bad.stderr
  assert 'Traceback' not in bad.stderr


def test_model_fresh_buffers_come_from_the_whole_program():
  cfg = config.resolve('model', 'tiny', dtype='float32')
  balance = dataclasses.replace(CPU, fresh_threshold_bytes=1)  # every buffer faults
  cpu = targets.resolve('cpu')
  whole = compile_lib.compile_hlo(cfg, 2, cpu).memory
  compiled = predict.predict(cfg, [1, 2], target=cpu, balance=balance)
  assert compiled.points[1]['alloc_s'] == pytest.approx(
      principle.fresh_buffer_time(whole, balance))
  # Given (as a sweep has it), the program's memory_analysis is used as it is.
  given = {n: dict(temp_size_in_bytes=3e9 * n, output_size_in_bytes=0) for n in (1, 2)}
  passed = predict.predict(cfg, [1, 2], target=cpu, balance=balance, memory=given)
  assert [p['alloc_s'] for p in passed.points] == pytest.approx([1.0, 2.0])
