"""GPU kernel pricing: the principle's clock for every kernel XLA:GPU launches.

One GEMM kernel with a tile config (block_m along the positions, block_n along
the features, block_k, split-K s, warps, stages) on a spec-table GPU:

  occupancy  resident blocks per SM = min(blocks limit, threads limit / threads,
             shared memory / (stages x (bm + bn) x bk x bytes), registers /
             (threads x registers per thread)); registers per thread = the f32
             accumulators bm x bn / threads + base_registers.
  waves      the grid (ceil(M/bm) x ceil(F/bn) x s x batch blocks) runs in waves
             of SMs x resident blocks; each wave is priced on its own (a last
             partial wave keeps few SMs busy), so time is quantized by waves.
  compute    per wave: the busiest SM's blocks x 2 bm bn (K/s) FLOPs at the SM's
             share of the peak x tensor_efficiency x min(1, resident warps / 4)
             (4 tensor cores per SM, one per sub-partition; a warp uses one) x
             mma_sync_fraction for Triton tiles that cannot use wgmma on sm_90.
  memory     a kernel that streams from HBM first pays dram_fill_s (the first
             loads' latency and the drain of the last wave), in full from
             fill_full_bytes of HBM traffic and in proportion below it (a kernel
             that moves nothing costs its launch). HBM bytes: weights,
             activations and output once. A weight panel is re-read by every
             extra position tile, an activation tile by every extra feature
             tile. Re-reads by blocks of the same wave hit L2: they load the same
             lines within microseconds of each other (grouped tile order runs a
             panel's position tiles side by side, and every panel of a wave reads
             the same activations). Re-reads across waves hit with fraction
             min(1, L2 / live set), the live set being what one wave streams
             (its panels and the activations). split-K f32 partials live in L2 with
             fraction min(1, L2 / partial bytes), the rest goes to HBM. Bandwidth =
             min(HBM x hbm_efficiency, bytes in flight / DRAM latency) (Little's
             law: a grid of few small single-stage blocks cannot fill HBM); all
             loads (HBM and L2 hits) also pass the busy SMs' share of the L2
             bandwidth, so a grid of few blocks cannot stream at full speed.
  per wave   max(compute, memory) + (1 - overlap) x min(compute, memory): the
             part of the shorter one the pipeline does not hide (prologue,
             epilogue, issue slots shared by loads and MMAs); kernel = sum over
             waves.
  launch     every kernel costs launch_graph_s (a node of a CUDA graph; decode
             steps run as graphs) or launch_eager_s, and a forward a floor.
  split-K    the partials are reduced (L2 part at L2 speed) into the output: by a
             second kernel for XLA's Triton split-K, in place inside the kernel
             for cuBLAS (cublasLt reduction scheme INPLACE).
  cuBLAS     custom calls carry no tile: their CTA tiles come from public kernel
             names (hardware.PRICING_SOURCES['cublas_tiles']); the rule is the
             one cuBLAS's heuristic aims at: the fastest listed tile and split-K
             under this same clock. M=1 runs a GEMV.
  streamed   any other kernel (elementwise, reductions, the N=1 GEMV reduce):
             its bytes at HBM x hbm_efficiency; reductions (and split-K reduces)
             read their operands whole.

Constants: hardware.SPECS[...].pricing, each with its source in
hardware.PRICING_SOURCES; the calibrated ones are listed in hardware.CALIBRATION.
"""

import dataclasses
import math

from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import principle


@dataclasses.dataclass(frozen=True)
class Gemm:
  """One GEMM problem: [m, k] x [k, f], `batch` times."""
  m: int
  k: int
  f: int
  batch: int = 1
  in_bytes: int = 2
  out_bytes: int = 2


@dataclasses.dataclass(frozen=True)
class GemmConfig:
  """A kernel choice for a GEMM: backend 'triton', 'cublas' or 'gemv'."""
  backend: str
  block_m: int = 0
  block_n: int = 0
  block_k: int = 0
  split_k: int = 1
  num_stages: int = 1
  num_warps: int = 4

  @property
  def label(self) -> str:
    if self.backend == 'gemv':
      return 'gemv'
    return (f'{self.backend} {self.block_m}x{self.block_n}x{self.block_k} '
            f's{self.split_k} w{self.num_warps} st{self.num_stages}')


@dataclasses.dataclass(frozen=True)
class GemmTime:
  """A priced GEMM choice. t_s includes its launches (GEMM, split-K reduce)."""
  config: GemmConfig
  t_s: float
  t_kernel_s: float  # the GEMM kernel without launch
  t_reduce_s: float  # the split-K reduce without launch
  launches: int
  t_compute_s: float
  t_memory_s: float
  flops: float  # as computed, padded to tiles
  hbm_bytes: float
  l2_bytes: float
  blocks: int
  m_tiles: int
  waves: int
  blocks_per_sm: int
  l2_hit: float

  def to_dict(self) -> dict:
    return dict(dataclasses.asdict(self), config=self.config.label)


def constants(spec) -> dict:
  """The pricing constants of a spec-table GPU; ConfigError if it has none."""
  if spec is None or not spec.pricing or not spec.sm_count:
    raise errors.ConfigError(
        f'{getattr(spec, "description", spec)} has no GPU pricing constants in '
        'the spec table.')
  return spec.pricing


def launch_s(spec, graph: bool = True) -> float:
  c = constants(spec)
  return c['launch_graph_s'] if graph else c['launch_eager_s']


def forward_floor_s(spec, graph: bool = True) -> float:
  c = constants(spec)
  return c['forward_floor_graph_s'] if graph else c['forward_floor_eager_s']


def fill_s(spec, hbm_bytes: float) -> float:
  """The first loads' latency and the last wave's drain beyond launch_graph_s:
  dram_fill_s for a stream of at least fill_full_bytes (the smallest weights
  of the line that set it), phased in linearly below, so a kernel that moves
  nothing costs launch_graph_s, as the smallest kernel that set it did."""
  c = constants(spec)
  return c['dram_fill_s'] * min(1.0, max(hbm_bytes, 0.0) / c['fill_full_bytes'])


def resident_blocks(spec, threads: int, shared_memory: int = 0,
                    registers_per_thread: int = 0) -> int:
  """Blocks resident on one SM, bounded by the block limit, threads, shared
  memory and registers (whichever are known)."""
  gpu = spec.gpu or {}
  limits = [(spec.pricing or {}).get('blocks_per_core_limit', 32),
            gpu.get('threads_per_core_limit', 2048) // max(threads, 1)]
  if shared_memory and gpu.get('shared_memory_per_core'):
    limits.append(gpu['shared_memory_per_core'] // shared_memory)
  if registers_per_thread:
    limits.append(gpu.get('registers_per_core_limit', 65536) //
                  (registers_per_thread * max(threads, 1)))
  return max(min(limits), 1)


def shared_memory_bytes(gemm: Gemm, cfg: GemmConfig) -> int:
  return max(cfg.num_stages, 1) * (cfg.block_m + cfg.block_n) * cfg.block_k * gemm.in_bytes


def registers_per_thread(cfg: GemmConfig, spec) -> int:
  threads = 32 * cfg.num_warps
  return min(255, -(-cfg.block_m * cfg.block_n // threads) +
             constants(spec)['base_registers'])


def fits(gemm: Gemm, cfg: GemmConfig, spec) -> bool:
  """Whether the config's shared memory fits one block (opt-in limit)."""
  limit = (spec.gpu or {}).get('shared_memory_per_block_optin')
  return not limit or shared_memory_bytes(gemm, cfg) <= limit


def _occupancy(cfg: GemmConfig, in_bytes: int, spec) -> int:
  key = (cfg, in_bytes, spec.name, id(spec))
  if key not in _OCCUPANCY:
    smem = max(cfg.num_stages, 1) * (cfg.block_m + cfg.block_n) * cfg.block_k * in_bytes
    # The spec is kept with the value so its id is never reused while cached.
    _OCCUPANCY[key] = (spec, resident_blocks(spec, 32 * cfg.num_warps, smem,
                                             registers_per_thread(cfg, spec)))
  return _OCCUPANCY[key][1]


_OCCUPANCY = {}


def _uses_wgmma(cfg: GemmConfig, spec) -> bool:
  major = (spec.gpu or {}).get('compute_capability', (8, 0))[0]
  if major < 9 or cfg.backend != 'triton':
    return True  # mma.sync is the native path before sm_90; cuBLAS uses wgmma
  return cfg.block_m >= 64 and cfg.num_warps % 4 == 0


def gemm_time(gemm: Gemm, cfg: GemmConfig, spec, *, graph: bool = True,
              shared_memory: int | None = None,
              threads: int | None = None) -> GemmTime:
  """Time of one GEMM kernel (and its split-K reduce) under `cfg` on `spec`.

  shared_memory and threads override the values derived from the tile (a
  compiled kernel's thunk states them)."""
  c = constants(spec)
  if cfg.backend == 'gemv':
    return gemv_time(gemm, spec, graph=graph)
  sms = spec.sm_count
  bm, bn, s = cfg.block_m, cfg.block_n, max(cfg.split_k, 1)
  m_tiles, n_tiles = -(-gemm.m // bm), -(-gemm.f // bn)
  k_split = -(-gemm.k // s)
  blocks = m_tiles * n_tiles * s * gemm.batch
  if shared_memory or threads:
    threads = threads or 32 * cfg.num_warps
    smem = shared_memory or shared_memory_bytes(gemm, cfg)
    per_sm = resident_blocks(spec, threads, smem, registers_per_thread(cfg, spec))
  else:
    per_sm = _occupancy(cfg, gemm.in_bytes, spec)
  concurrent = sms * per_sm
  waves = -(-blocks // concurrent)
  b = gemm.in_bytes
  weights = gemm.k * gemm.f * b * gemm.batch
  acts = gemm.m * gemm.k * b * gemm.batch
  out = gemm.m * gemm.f * gemm.out_bytes * gemm.batch
  partials = gemm.m * gemm.f * 4 * s * gemm.batch if s > 1 else 0
  l2 = spec.l2_bytes or 0
  # Waves that read one weight panel (its position tiles run side by side) and
  # one activation slice (every panel of its split and batch reads it).
  panel_waves = -(-m_tiles // concurrent)
  act_waves = min(n_tiles, -(-waves // (s * gemm.batch)))
  within = weights * (m_tiles - panel_waves) + acts * (n_tiles - act_waves)
  across = weights * (panel_waves - 1) + acts * (act_waves - 1)
  panels = min(n_tiles * s * gemm.batch, -(-min(blocks, concurrent) // m_tiles))
  live = panels * k_split * bn * b + acts
  hit = min(1.0, l2 / live) if live else 1.0
  partial_hit = min(1.0, l2 / partials) if partials else 1.0
  hbm = weights + acts + (1 - hit) * across + (
      (1 - partial_hit) * partials if s > 1 else out)
  l2_bytes = within + hit * across + (partial_hit * partials if s > 1 else 0)
  block_flops = 2.0 * bm * bn * k_split
  in_flight = max(cfg.num_stages, 1) * (bm + bn) * cfg.block_k * b
  sm_peak = spec_peak(spec) / sms * c['tensor_efficiency'] * (
      1.0 if _uses_wgmma(cfg, spec) else c['mma_sync_fraction'])
  hbm_bw = spec.memory_bandwidth * c['hbm_efficiency']

  def wave(count):
    active, per = min(sms, count), -(-count // sms)
    share = count / blocks
    t_c = per * block_flops / (sm_peak * min(1.0, per * cfg.num_warps / 4))
    bw = min(hbm_bw, count * in_flight / c['dram_latency_s'])
    # Every load reaches the SM through its L2 port (the L2 bandwidth's share
    # of the busy SMs); HBM traffic also queues at HBM. The two overlap.
    port = c['l2_bandwidth'] * active / sms
    t_m = max(share * hbm / bw, share * (hbm + l2_bytes) / port)
    return t_c, t_m

  full, rest = divmod(blocks, concurrent)
  parts = [wave(concurrent)] * full + ([wave(rest)] if rest else [])
  hidden = c['overlap']
  t_kernel = fill_s(spec, hbm) + sum(max(tc, tm) + (1 - hidden) * min(tc, tm)
                                    for tc, tm in parts)
  t_reduce = 0.0
  # The split-K reduce: partials (L2 part at L2 speed) in, output out. cuBLAS
  # reduces in place inside the GEMM kernel (cublasLt reduction scheme
  # INPLACE: no second kernel); XLA's Triton split-K is a second kernel.
  inplace = cfg.backend == 'cublas'
  if s > 1:
    t_reduce = (partial_hit * partials / c['l2_bandwidth'] +
                ((1 - partial_hit) * partials + out) / hbm_bw)
  launches = 2 if s > 1 and not inplace else 1
  return GemmTime(
      cfg, t_kernel + t_reduce + launches * launch_s(spec, graph), t_kernel,
      t_reduce, launches, sum(tc for tc, _ in parts), sum(tm for _, tm in parts),
      block_flops * blocks, hbm + (out if s > 1 else 0), l2_bytes, blocks,
      m_tiles, waves, per_sm, hit)


def gemv_time(gemm: Gemm, spec, *, graph: bool = True) -> GemmTime:
  """A GEMV (one row: XLA's reduce fusion, cuBLAS's gemv kernels): streams the
  weights once at the achievable HBM bandwidth, its FLOPs on the CUDA cores are
  never the bound at one row."""
  c = constants(spec)
  moved = (gemm.k * gemm.f + gemm.m * gemm.k) * gemm.in_bytes * gemm.batch + (
      gemm.m * gemm.f * gemm.out_bytes * gemm.batch)
  t = fill_s(spec, moved) + moved / (spec.memory_bandwidth * c['hbm_efficiency'])
  return GemmTime(GemmConfig('gemv'), t + launch_s(spec, graph), t, 0.0, 1, 0.0,
                  t, 2.0 * gemm.m * gemm.k * gemm.f * gemm.batch, moved, 0.0,
                  0, 1, 1, 1, 0.0)


def spec_peak(spec, dtype: str = 'bfloat16') -> float:
  return spec.peak_flops.get(dtype) or spec.peak_flops['bfloat16']


def cublas_configs(gemm: Gemm, spec) -> list:
  """cuBLAS candidates: the listed CTA tiles x split-K 1..16 (K per split at
  least one k-block), and a GEMV when M is 1."""
  major = (spec.gpu or {}).get('compute_capability', (8, 0))[0]
  block_k = 64 if major >= 9 else 32
  configs = [GemmConfig('gemv')] if gemm.m == 1 else []
  for bm, bn in constants(spec)['cublas_tiles']:
    warps = 4 if bm * bn <= 64 * 128 else 8
    for s in (1, 2, 4, 8, 16):
      if s > 1 and gemm.k // s < block_k:
        break
      stages = 5
      cfg = GemmConfig('cublas', bm, bn, block_k, s, stages, warps)
      while stages > 2 and not fits(gemm, cfg, spec):
        stages -= 1
        cfg = dataclasses.replace(cfg, num_stages=stages)
      if fits(gemm, cfg, spec):
        configs.append(cfg)
  return configs


def best(gemm: Gemm, configs, spec, *, graph: bool = True) -> GemmTime:
  """The fastest of `configs` (ties: the first listed)."""
  priced = [gemm_time(gemm, c, spec, graph=graph) for c in configs
            if c.backend == 'gemv' or fits(gemm, c, spec)]
  return min(priced, key=lambda t: t.t_s)


# ----------------------------------------------------------------------------
# Compiled kernels (hlo.Kernel records).

def waves(kernel, spec) -> int | None:
  """Waves of a compiled kernel's grid on `spec` (None without a grid):
  ceil(grid / (SMs x resident blocks)), residency from the thunk's threads and
  shared memory and, for a Triton GEMM, registers estimated from its tile."""
  if not kernel.grid_blocks or spec is None or not spec.sm_count:
    return None
  regs = (registers_per_thread(kernel_config(kernel), spec)
          if kernel.tile_positions and kernel.tile_features and spec.pricing else 0)
  per_sm = resident_blocks(spec, kernel.threads_per_block or 1,
                           kernel.shared_memory_bytes or 0, regs)
  return math.ceil(kernel.grid_blocks / (spec.sm_count * per_sm))


def _reads_whole(kernel) -> bool:
  return (kernel.kind in principle.GEMM_KINDS or kernel.kind == 'gpu_gemv_reduce'
          or kernel.split_k_of is not None or kernel.opcode == 'reduce'
          or kernel.fusion_kind in ('kInput', 'kReduction'))


def kernel_bytes(kernel) -> int:
  """Bytes a GPU kernel moves: GEMMs, GEMVs and reductions (split-K reduces
  included) read their operands whole; gathers, slices and elementwise
  fusions read at most as much of an operand as they write."""
  out = principle.shape_bytes(kernel.output_shape)
  whole = _reads_whole(kernel)
  return out + sum(principle.shape_bytes(s) if whole else
                   min(principle.shape_bytes(s), out)
                   for s in kernel.operand_shapes)


def kernel_gemm(kernel) -> Gemm:
  rows, features, contraction, batch, splits = principle._dot_sizes(kernel)  # pylint: disable=protected-access
  dtype = kernel.dot_rhs.dtype if kernel.dot_rhs is not None else 'bf16'
  out = kernel.output_shape[0] if isinstance(kernel.output_shape, (tuple, list)) else (
      kernel.output_shape)
  in_bytes = principle._ELEMENT_BYTES.get(dtype, 2)  # pylint: disable=protected-access
  # A split-K kernel writes f32 partials; the GEMM's own output is the reduce's.
  out_bytes = (in_bytes if splits > 1 or out is None else
               principle._ELEMENT_BYTES.get(out.dtype, 2))  # pylint: disable=protected-access
  return Gemm(rows, contraction * splits, features, batch, in_bytes, out_bytes)


def kernel_config(kernel) -> GemmConfig:
  """The Triton config a compiled GEMM kernel carries."""
  return GemmConfig('triton', kernel.tile_positions, kernel.tile_features,
                    kernel.block_k or 16, kernel.split_k or 1,
                    kernel.num_stages or 1, kernel.num_warps or 4)


def _streamed(kernel, spec, l2_bytes: float = 0.0) -> principle.KernelTime:
  c = constants(spec)
  moved = kernel_bytes(kernel)
  t = fill_s(spec, moved - l2_bytes) + (moved - l2_bytes) / (spec.memory_bandwidth * c['hbm_efficiency']) + (
      l2_bytes / c['l2_bandwidth'])
  return principle.KernelTime(kernel.name, kernel.source_op, kernel.kind, moved,
                              0.0, t, 0.0, t)


def _from_gemm(kernel, priced: GemmTime, *, reduce: bool) -> principle.KernelTime:
  cfg = priced.config
  t = priced.t_kernel_s + (priced.t_reduce_s if reduce else 0.0)
  tiling = ((cfg.backend, cfg.block_m, cfg.block_n, cfg.split_k)
            if cfg.backend != 'gemv' else ('gemv',))
  return principle.KernelTime(
      kernel.name, kernel.source_op, kernel.kind if cfg.backend != 'gemv' else 'gemv',
      priced.hbm_bytes, priced.flops, priced.t_memory_s, priced.t_compute_s, t,
      priced.m_tiles, priced.waves, tiling)


def price_kernel(kernel, spec, *, graph: bool = True, autotune=None) -> tuple:
  """(KernelTime without launch, number of launches) of one compiled kernel.

  autotune: None to price the kernel as compiled, or a function Gemm ->
  GemmTime (autotune.choose) that re-tiles every Triton/cuBLAS GEMM."""
  gemm_like = (kernel.kind in ('triton_gemm', 'cublas') and
               kernel.dot_dimension_numbers is not None)
  if gemm_like and autotune is not None:
    priced = autotune(kernel_gemm(kernel))
    return _from_gemm(kernel, priced, reduce=True), priced.launches
  if gemm_like and kernel.kind == 'cublas':
    priced = best(kernel_gemm(kernel), cublas_configs(kernel_gemm(kernel), spec),
                  spec, graph=graph)
    return _from_gemm(kernel, priced, reduce=True), priced.launches
  if gemm_like and kernel.tile_positions:
    gemm = kernel_gemm(kernel)
    priced = gemm_time(gemm, kernel_config(kernel), spec, graph=graph,
                       shared_memory=kernel.shared_memory_bytes,
                       threads=kernel.threads_per_block)
    return _from_gemm(kernel, priced, reduce=False), 1  # its reduce is a kernel
  if kernel.split_k_of is not None:  # partials written just before: L2 first
    partials = sum(principle.shape_bytes(s) for s in kernel.operand_shapes)
    in_l2 = min(partials, spec.l2_bytes or 0)
    return _streamed(kernel, spec, in_l2), 1
  return _streamed(kernel, spec), 1


def price_module(kernels, positions: int, spec, *, graph: bool = True,
                 autotune=None) -> principle.CurvePoint:
  """T_pred of one compiled forward on a GPU: every kernel plus its launch,
  plus the forward's floor (graph or eager)."""
  priced, launches = [], 0
  for kernel in kernels:
    k, n = price_kernel(kernel, spec, graph=graph, autotune=autotune)
    if autotune is not None and kernel.split_k_of is not None:
      continue  # the re-tiled GEMM carries its own reduce
    priced.append(k)
    launches += n
  floor = forward_floor_s(spec, graph) + launches * launch_s(spec, graph)
  return principle.CurvePoint(positions, tuple(priced), floor, 0.0,
                              floor + sum(k.t_s for k in priced))


def pricing_record(spec, graph: bool = True) -> dict:
  """The constants a prediction used, with their sources and the calibration."""
  c = constants(spec)
  return dict(graph=graph, constants={k: (list(map(list, v)) if k == 'cublas_tiles'
                                         else v) for k, v in c.items()},
              sources={k: hardware.PRICING_SOURCES[k] for k in c},
              calibration=hardware.CALIBRATION)
