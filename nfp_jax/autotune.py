"""The `model-autotune` tiling source: XLA's GEMM autotuner with the principle as
its clock.

On a real GPU, XLA compiles each Triton GEMM fusion under every config of its
search space, times them, also times cuBLAS, and keeps the fastest. Deviceless
there is nothing to time, so here every candidate is priced by pricing_gpu at
the GEMM's shape (its padding, grid, occupancy and waves are derived from the
config, no compile needed) and the cheapest wins, per GEMM and per N.

The search space is XLA's own (TRITON_SOURCE): the default (non-exhaustive) list
of `TritonGemmConfig(block_m, block_n, block_k, split_k, num_stages,
num_warps)`, with the three Hopper-only configs on sm_90+, then shrunk to the
problem as XLA's ReduceTileSizes does (block_m <= max(16, next_pow2(M)), the same
for block_n with F and block_k with K; split_k <= max(next_pow2(K) / block_k,
1); duplicates dropped). Configs whose shared memory does not fit a block are
dropped (they fail to launch). cuBLAS adds its candidates
(pricing_gpu.cublas_configs), and a one-row GEMM also the GEMV that XLA rewrites
it into.
"""

import functools

from nfp_jax import pricing_gpu

TRITON_SOURCE = dict(
    repository='openxla/xla',
    path='xla/service/gpu/autotuning/gemm_fusion_autotuner_cuda.cc',
    function='GemmFusionAutotunerImpl::GetDefaultTritonConfigs',
    commit='066a75819eb1de05f664143c4d0c9848e261334b',
    shrink='ReduceTileSizes / GetUpperLimit / GetSplitKLimit in '
           'xla/service/gpu/gemm_fusion_autotuner.cc (kMinTileSize 16)')

# (block_m, block_n, block_k, split_k, num_stages, num_warps), as listed there.
TRITON_CONFIGS = (
    (32, 32, 256, 1, 1, 4), (64, 32, 32, 16, 1, 4), (32, 64, 64, 4, 1, 4),
    (128, 128, 64, 4, 1, 4), (16, 16, 256, 1, 1, 4), (16, 128, 32, 16, 1, 4),
    (16, 64, 128, 1, 1, 4), (16, 128, 32, 8, 1, 4), (16, 16, 512, 1, 1, 4),
    (32, 16, 512, 1, 1, 4), (64, 32, 64, 1, 2, 8), (128, 256, 32, 1, 3, 8),
    (256, 128, 32, 1, 3, 8), (256, 64, 32, 1, 4, 4), (64, 256, 32, 1, 4, 4),
    (128, 64, 32, 1, 4, 4), (64, 128, 32, 1, 4, 4), (256, 128, 128, 1, 3, 8),
    (256, 64, 128, 1, 4, 4), (64, 256, 128, 1, 4, 4), (128, 128, 128, 1, 4, 4),
    (128, 64, 64, 1, 4, 4), (64, 128, 64, 1, 4, 4), (128, 32, 64, 1, 4, 4),
    (64, 32, 64, 1, 4, 4), (32, 128, 32, 1, 4, 4), (128, 128, 32, 1, 4, 4),
    (16, 16, 256, 1, 3, 4), (128, 128, 64, 2, 1, 8), (64, 64, 64, 1, 2, 4),
    (16, 64, 256, 8, 1, 4), (256, 256, 128, 1, 3, 8))
HOPPER_CONFIGS = ((16, 32, 32, 8, 1, 2), (16, 64, 128, 8, 1, 4),
                  (16, 64, 128, 16, 3, 4))
_MIN_TILE = 16


def _next_pow2(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


def triton_configs(gemm: pricing_gpu.Gemm, spec, space=None) -> list:
  """XLA's Triton search space for this GEMM on `spec`, shrunk to the problem."""
  if space is None:
    major = (spec.gpu or {}).get('compute_capability', (8, 0))[0]
    space = TRITON_CONFIGS + (HOPPER_CONFIGS if major >= 9 else ())
  lim_m = max(_next_pow2(gemm.m), _MIN_TILE)
  lim_n = max(_next_pow2(gemm.f), _MIN_TILE)
  lim_k = max(_next_pow2(gemm.k), _MIN_TILE)
  seen, out = set(), []
  for bm, bn, bk, s, stages, warps in space:
    bm, bn, bk = min(bm, lim_m), min(bn, lim_n), min(bk, lim_k)
    s = min(s, max(lim_k // bk, 1))
    cfg = pricing_gpu.GemmConfig('triton', bm, bn, bk, s, stages, warps)
    if cfg not in seen and pricing_gpu.fits(gemm, cfg, spec):
      seen.add(cfg)
      out.append(cfg)
  return out


def candidates(gemm: pricing_gpu.Gemm, spec, space=None,
               cublas: bool = True) -> list:
  """Every candidate the autotuner compares: Triton configs, cuBLAS, and the
  GEMV for one row."""
  out = triton_configs(gemm, spec, space)
  if cublas:
    out += pricing_gpu.cublas_configs(gemm, spec)
  elif gemm.m == 1:
    out.append(pricing_gpu.GemmConfig('gemv'))
  return out


@functools.lru_cache(maxsize=200_000)
def _choose(gemm, spec_name, graph, space, cublas):
  from nfp_jax import hardware  # pylint: disable=g-import-not-at-top
  spec = hardware.SPECS[spec_name]
  return pricing_gpu.best(gemm, candidates(gemm, spec, space, cublas), spec,
                          graph=graph)


def choose(gemm: pricing_gpu.Gemm, spec, *, graph: bool = True, space=None,
           cublas: bool = True) -> pricing_gpu.GemmTime:
  """The fastest candidate for one GEMM (cached per shape and target)."""
  from nfp_jax import hardware  # pylint: disable=g-import-not-at-top
  if hardware.SPECS.get(spec.name) is spec:
    return _choose(gemm, spec.name, graph, space, cublas)
  return pricing_gpu.best(gemm, candidates(gemm, spec, space, cublas), spec,
                          graph=graph)


def chooser(spec, *, graph: bool = True):
  """A Gemm -> GemmTime function for pricing_gpu.price_module."""
  return lambda gemm: choose(gemm, spec, graph=graph)


def winners(k: int, f: int, positions, spec, *, batch: int = 1,
            graph: bool = True) -> list:
  """The winning config of a [N, k] x [k, f] GEMM at every N, with its time."""
  out = []
  for n in positions:
    won = choose(pricing_gpu.Gemm(n, k, f, batch), spec, graph=graph)
    out.append(dict(positions=n, config=won.config.label, t_s=won.t_s,
                    m_tiles=won.m_tiles, blocks=won.blocks, waves=won.waves,
                    split_k=won.config.split_k))
  return out


def kernel_winner(kernel, spec) -> dict | None:
  """The model-autotune choice for one compiled GEMM kernel (None for other
  kernels): its config, grid, waves and time."""
  if kernel.kind not in ('triton_gemm', 'cublas') or kernel.dot_dimension_numbers is None:
    return None
  won = choose(pricing_gpu.kernel_gemm(kernel), spec)
  cfg = won.config
  return dict(backend=cfg.backend, config=cfg.label, tile_positions=cfg.block_m,
              tile_features=cfg.block_n, block_k=cfg.block_k,
              split_k=cfg.split_k, num_warps=cfg.num_warps,
              num_stages=cfg.num_stages, grid_blocks=won.blocks,
              waves=won.waves, t_s=won.t_s)
