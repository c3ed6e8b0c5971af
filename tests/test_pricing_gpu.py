"""GPU kernel pricing (pricing_gpu) and model-autotune (autotune) against
hand-computed times on a toy GPU whose numbers make the arithmetic plain."""

import dataclasses
import math

import pytest

from nfp_jax import anchors
from nfp_jax import autotune
from nfp_jax import hardware
from nfp_jax import pricing_gpu as pg
from nfp_jax import principle

_PRICING = dict(launch_graph_s=2e-6, launch_eager_s=5e-6,
                forward_floor_graph_s=3e-6, forward_floor_eager_s=10e-6,
                hbm_efficiency=1.0, dram_fill_s=0.0, fill_full_bytes=4e6, overlap=1.0,
                tensor_efficiency=1.0, mma_sync_fraction=1.0,
                dram_latency_s=1e-12, l2_bandwidth=1e18,
                blocks_per_core_limit=1, base_registers=32,
                cublas_tiles=((64, 64),))
TOY = hardware.HardwareSpec(
    'toy', 'toy GPU', {'bfloat16': 100e12}, 1e12, 2**30, 10, 10 * 2**20, ('test',),
    gpu=dict(compute_capability=(8, 0), threads_per_core_limit=2048,
             shared_memory_per_core=200_000, shared_memory_per_block_optin=200_000,
             registers_per_core_limit=65536),
    pricing=_PRICING)
SM_RATE = 100e12 / 10  # FLOP/s of one SM


def toy(**changes):
  spec_fields = {k: v for k, v in changes.items() if k in ('memory_bandwidth', 'l2_bytes')}
  pricing = {k: v for k, v in changes.items() if k not in spec_fields}
  return dataclasses.replace(TOY, pricing=dict(_PRICING, **pricing), **spec_fields)


def triton(bm, bn, bk, s=1, warps=4, stages=1):
  return pg.GemmConfig('triton', bm, bn, bk, s, stages, warps)


def test_launch_floor_binds_a_tiny_gemm():
  t = pg.gemm_time(pg.Gemm(1, 16, 16), triton(16, 16, 16), TOY)
  flops = 2 * 16 * 16 * 16  # one padded 16x16 tile on one SM
  assert t.launches == 1
  assert t.t_s == pytest.approx(2e-6 + flops / SM_RATE)
  assert t.t_s / 2e-6 < 1.001  # the launch is all of it
  eager = pg.gemm_time(pg.Gemm(1, 16, 16), triton(16, 16, 16), TOY, graph=False)
  assert eager.t_s == pytest.approx(5e-6 + flops / SM_RATE)
  assert pg.forward_floor_s(TOY) == 3e-6 and pg.forward_floor_s(TOY, False) == 10e-6


def test_dram_fill_is_paid_in_full_from_fill_full_bytes_and_in_proportion_below():
  spec = toy(dram_fill_s=1e-6, fill_full_bytes=4e6)
  assert pg.fill_s(spec, 0) == 0.0  # the smallest kernel costs its launch
  assert pg.fill_s(spec, 1e6) == pytest.approx(0.25e-6)
  assert pg.fill_s(spec, 4e6) == pg.fill_s(spec, 400e6) == pytest.approx(1e-6)
  # A GEMV of 2 MB: launch, half the fill, then its stream at 1 TB/s.
  gemv = pg.gemv_time(pg.Gemm(1, 1000, 1000), spec)
  moved = (1000 * 1000 + 1000) * 2 + 1000 * 2
  assert gemv.t_s == pytest.approx(2e-6 + 1e-6 * moved / 4e6 + moved / 1e12)


def test_waves_quantize_the_time():
  spec = toy(memory_bandwidth=1e18)
  block = 2 * 64 * 64 * 1024 / SM_RATE  # one 64x64 tile over K=1024 on one SM
  def kernel(f):
    return pg.gemm_time(pg.Gemm(64, 1024, f), triton(64, 64, 32), spec)
  one, partial, two = kernel(640), kernel(1216), kernel(1280)  # 10, 19, 20 blocks
  assert (one.waves, partial.waves, two.waves) == (1, 2, 2)
  assert one.t_kernel_s == pytest.approx(block)
  assert partial.t_kernel_s == pytest.approx(2 * block)  # 19 blocks cost 20
  assert two.t_kernel_s == pytest.approx(2 * block)


def test_split_k_partials_are_priced_in_l2_by_size():
  gemm = pg.Gemm(16, 4096, 64)
  cfg = triton(16, 64, 64, s=4)
  partials = 16 * 64 * 4 * 4  # f32, one slice per split
  out = 16 * 64 * 2
  fast_l2 = toy(memory_bandwidth=1e11, l2_bandwidth=1e12)
  in_l2 = pg.gemm_time(gemm, cfg, fast_l2)
  assert in_l2.launches == 2  # XLA's Triton split-K: a second (reduce) kernel
  assert in_l2.t_reduce_s == pytest.approx(partials / 1e12 + out / 1e11)
  half = pg.gemm_time(gemm, cfg, toy(memory_bandwidth=1e11, l2_bandwidth=1e12,
                                     l2_bytes=partials // 2))
  assert half.t_reduce_s == pytest.approx(
      0.5 * partials / 1e12 + (0.5 * partials + out) / 1e11)
  assert half.t_reduce_s > in_l2.t_reduce_s  # the L2 case binds: cheaper
  cublas = pg.gemm_time(gemm, pg.GemmConfig('cublas', 16, 64, 64, 4, 1, 4), fast_l2)
  assert cublas.launches == 1  # reduced in place


def test_weight_panels_re_read_within_a_wave_hit_l2_and_across_waves_partly():
  k = 1024
  # 2 position tiles x 5 feature tiles: 10 blocks, one wave on 10 SMs: every
  # re-read comes from a block of the same wave and hits, however small L2 is.
  gemm = pg.Gemm(128, k, 320)
  weights, acts, out = k * 320 * 2, 128 * k * 2, 128 * 320 * 2
  one_wave = pg.gemm_time(gemm, triton(64, 64, 32), toy(l2_bytes=1024))
  assert one_wave.waves == 1 and one_wave.hbm_bytes == weights + acts + out
  assert one_wave.l2_bytes == weights * 1 + acts * 4
  # 20 position tiles x 1 feature tile: 20 blocks in 2 waves of 10. The panel is
  # re-read 19 times: 18 within a wave (hits), once across the waves, which
  # hits with min(1, L2 / live), live = the wave's panel and the activations.
  gemm = pg.Gemm(20 * 64, k, 64)
  weights, acts, out = k * 64 * 2, 20 * 64 * k * 2, 20 * 64 * 64 * 2
  live = k * 64 * 2 + acts
  full = pg.gemm_time(gemm, triton(64, 64, 32), toy(l2_bytes=10 * live))
  half = pg.gemm_time(gemm, triton(64, 64, 32), toy(l2_bytes=live // 2))
  assert full.waves == 2 and full.l2_hit == 1.0
  assert full.hbm_bytes == weights + acts + out
  assert half.l2_hit == pytest.approx(0.5)
  assert half.hbm_bytes == pytest.approx(weights + acts + out + 0.5 * weights)
  assert half.l2_bytes == pytest.approx(18 * weights + 0.5 * weights)
  assert half.t_memory_s > full.t_memory_s  # the miss binds the memory time


def test_cublas_tile_rule_steps_at_its_m_tile():
  spec = toy(memory_bandwidth=1e18, blocks_per_core_limit=32, launch_graph_s=0.0)
  def point(n):  # K = 32: one k-block, so no split-K candidate
    won = pg.best(pg.Gemm(n, 32, 640), pg.cublas_configs(pg.Gemm(n, 32, 640), spec),
                  spec)
    return anchors._gemm_point(n, won, spec)  # pylint: disable=protected-access
  assert [(c.block_m, c.split_k) for c in pg.cublas_configs(pg.Gemm(8, 1024, 64), spec)
          if c.backend == 'cublas'] == [(64, s) for s in (1, 2, 4, 8, 16)]
  points = [point(n) for n in (2, 32, 64, 65)]
  t = [p.t_s for p in points]
  assert t[0] == pytest.approx(t[1]) and t[1] == pytest.approx(t[2])  # inside the tile
  assert t[3] > t[2] * 1.5  # the second M-tile
  assert principle.binding_mechanism(points, 64, 65) == 'tile_boundary'
  assert pg.cublas_configs(pg.Gemm(1, 1024, 64), spec)[0].backend == 'gemv'


def test_forward_floor_and_launches_in_a_priced_module():
  from nfp_jax import hlo  # pylint: disable=g-import-not-at-top
  shape = hlo.Shape('bf16', (1 << 20,))
  kernel = hlo.Kernel('add', 'add', 'other', 'fusion', 'add', operand_shapes=(shape, shape),
                      output_shape=shape, fusion_kind='kLoop')
  point = pg.price_module([kernel, kernel], 1, TOY)
  assert point.floor_s == pytest.approx(3e-6 + 2 * 2e-6)
  assert point.kernels[0].t_s == pytest.approx(3 * 2**21 / 1e12)  # 2 reads + 1 write


def test_model_autotune_picks_the_hand_computed_fastest():
  spec = toy(memory_bandwidth=1e18, blocks_per_core_limit=1, launch_graph_s=0.0)
  space = ((16, 16, 16, 1, 1, 1), (64, 64, 16, 1, 1, 4))
  def hand(n, f, bm, bn, warps):  # compute-bound: waves x one tile on one SM
    blocks = math.ceil(n / bm) * math.ceil(f / bn)
    return math.ceil(blocks / 10) * 2 * bm * bn * 64 / (SM_RATE * min(1, warps / 4))
  for n, f in ((16, 64), (64, 64), (256, 256), (1024, 1024)):
    times = {(bm, bn): hand(n, f, bm, bn, w) for bm, bn, _, _, _, w in space}
    won = autotune.choose(pg.Gemm(n, 64, f), spec, space=space, cublas=False)
    assert (won.config.block_m, won.config.block_n) == min(times, key=times.get)
    assert won.t_kernel_s == pytest.approx(min(times.values()))
  picks = {n: autotune.choose(pg.Gemm(n, 64, n), spec, space=space, cublas=False)
           .config.block_m for n in (16, 256)}
  assert picks == {16: 16, 256: 64}  # the winner changes with N


def test_xla_search_space_shrinks_to_the_problem():
  h100 = hardware.SPECS['h100']
  small = autotune.triton_configs(pg.Gemm(3, 64, 32), h100)
  assert all(c.block_m == 16 and c.block_n <= 32 and c.block_k <= 64 for c in small)
  assert all(c.split_k <= max(64 // c.block_k, 1) for c in small)
  full = autotune.triton_configs(pg.Gemm(1024, 8192, 8192), h100)
  listed = len(autotune.TRITON_CONFIGS) + len(autotune.HOPPER_CONFIGS)
  assert 0 < len(full) <= listed
  assert all(pg.fits(pg.Gemm(1024, 8192, 8192), c, h100) for c in full)


def test_every_gpu_target_has_sourced_pricing_constants():
  for spec in hardware.SPECS.values():
    if spec.gpu:
      assert set(spec.pricing) <= set(hardware.PRICING_SOURCES)
      assert set(hardware.PRICING_SOURCES) <= set(spec.pricing)
  assert hardware.SPECS['l40s'].gpu['compute_capability'] == (8, 9)
