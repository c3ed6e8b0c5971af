"""Hardware balance: a spec table of accelerators and microbenchmarks of the local
device (peak FLOP/s, memory bandwidth, per-call floor), cached per machine.

Spec figures are dense (no sparsity) vendor peaks; each entry names its sources.
Local figures are measured by separate microbenchmarks on fixed shapes that are
never the block under study, so nothing is fitted to a curve being predicted.
"""

import dataclasses
import datetime
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from nfp_jax import errors
from nfp_jax import measure
from nfp_jax import results

_T = 1e12


@dataclasses.dataclass(frozen=True)
class HardwareSpec:
  """One accelerator. peak_flops maps a dtype name to dense FLOP/s."""
  name: str
  description: str
  peak_flops: dict
  memory_bandwidth: float  # bytes/s
  memory_bytes: int
  sm_count: int | None  # streaming multiprocessors (None: not a GPU)
  l2_bytes: int | None
  sources: tuple
  # Fields of stream_executor.GpuTargetConfigProto for deviceless compilation.
  gpu: dict | None = None
  # Fields of a deviceless XLA:TPU compile (libtpu topology), for TPU targets.
  tpu: dict | None = None
  # Kernel-pricing constants of a GPU (pricing_gpu.py); keys in PRICING_SOURCES.
  pricing: dict | None = None


_H100_GPU = dict(compute_capability=(9, 0), clock_rate_ghz=1.98,
                 shared_memory_per_block=49152, shared_memory_per_core=233472,
                 shared_memory_per_block_optin=232448, fpus_per_core=128,
                 threads_per_core_limit=2048, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(9, 10, 0))


def _tpu_spec(name, description, bf16, bandwidth, memory, *, topology,
              mxu_count, mxu_dim, vmem_bytes, sources, int8=None,
              clock_mxus=None):
  """A TPU spec-table entry (fields in the comment of SPECS below)."""
  peaks = {'bfloat16': bf16, **({'int8': int8} if int8 else {})}
  return HardwareSpec(
      name, description, peaks, bandwidth, memory, None, None,
      sources + ('MXU count and dimension, VMEM: JAX 0.10.2 Pallas TPU table '
                 '(jax/_src/pallas/mosaic/tpu_info.py); clock derived from the '
                 'bf16 peak',),
      tpu=dict(topology=topology[0], chips_per_host_bounds=topology[1],
               mxu_count=mxu_count, mxu_dim=mxu_dim, vmem_bytes=vmem_bytes,
               clock_hz=bf16 / (2 * (clock_mxus or mxu_count) * mxu_dim**2),
               sublane=8,
               lane=128))

# Where each GPU pricing constant comes from. `calibrated` ones were set on the
# development anchors (../shared/anchors: aiconfigurator H200/L40S GEMMs) and on
# nothing else; CALIBRATION records how, and every prediction carries it.
PRICING_SOURCES = {
    'launch_graph_s': 'calibrated: the smallest GEMM of the aiconfigurator anchor '
                      '(32x32, 1 token, timed inside a CUDA graph) on that GPU: the '
                      'time of one kernel node in a graph, launch and ramp included',
    'launch_eager_s': 'estimate: host-side cudaLaunchKernel cost of a few '
                      'microseconds (NVIDIA blog "Getting Started with CUDA Graphs", '
                      '2019); used only when a forward is not a graph',
    'forward_floor_graph_s': 'estimate: one cudaGraphLaunch plus a stream sync '
                             '(same NVIDIA blog): a few microseconds per forward',
    'forward_floor_eager_s': 'estimate: host dispatch of a jitted call plus a sync '
                             'without a graph (XLA runtime), about 10 us',
    'hbm_efficiency': 'calibrated: slope of a least-squares line of T(1) against '
                      'weight bytes over the aiconfigurator GEMVs with at least 4 MB '
                      'of weights (H200: 4.06 TB/s of 4.8, 0.85); L40S: the median '
                      'rate of its GEMVs over 256 MB (0.78 TB/s of 0.864, 0.9; '
                      'smaller ones sit partly in its 96 MB L2); A100 and H100 take '
                      'the H200 figure (no anchor)',
    'dram_fill_s': 'calibrated: intercept of the same H200 line (3.81 us) less '
                   'launch_graph_s: the first loads\' latency and the last wave\'s '
                   'drain of a kernel that streams from HBM; other GPUs take it',
    'fill_full_bytes': 'the smallest weights of the GEMV line that set dram_fill_s '
                       '(4 MB): dram_fill_s is paid in full from there, in '
                       'proportion below, so the smallest kernel (the one that set '
                       'launch_graph_s, ~0 bytes) is priced at launch_graph_s',
    'tensor_efficiency': 'calibrated: best FLOP rate of the aiconfigurator anchor '
                         '(H200 829 TFLOP/s of 989: 0.84; L40S 254 of 362: 0.70); '
                         'H100 and A100 take the H200 figure (no anchor)',
    'mma_sync_fraction': 'estimate: on sm_90 a Triton tile that cannot use wgmma '
                         '(block_m < 64 or warps not a multiple of 4) runs the '
                         'Ampere-style mma.sync path, which the Hopper tuning guide '
                         'says does not reach wgmma throughput; 0.6 assumed. 1 on '
                         'sm_80 and sm_89 (mma.sync is their native path)',
    'dram_latency_s': 'published microbenchmarks of global-memory latency (Jia et '
                      'al. 2021 "Dissecting the Ampere GPU architecture"; Luo et '
                      'al. 2024 arXiv:2402.13499 for Hopper): roughly 0.5-0.7 us '
                      'under load; used in Little\'s law for a block\'s bytes in flight',
    'l2_bandwidth': 'L2-to-SM bandwidth. A100: NVIDIA A100 whitepaper (5120 '
                    'bytes/clk x 1.41 GHz = 7.2 TB/s). H100/H200: calibrated on '
                    'every fourth H200 curve of the aiconfigurator anchor among '
                    '{7, 10, 14} TB/s (14 TB/s is 54 bytes/clk per SM at 1.98 GHz, '
                    'against A100\'s 47; public Chips and Cheese tests of H100 PCIe '
                    'saw 5.5-7 TB/s, so this may also absorb TMA multicast of '
                    'shared tiles). L40S: 5 TB/s (Chips and Cheese, AD102; the '
                    'L40S anchor scores the same at 10). B200: twice H100 (estimate)',
    'overlap': 'calibrated: the share of the shorter of a kernel wave\'s compute '
               'and memory time hidden under the longer, one value per GPU chosen '
               'from {0, 0.25, 0.5, 0.75, 1} by the share within x2 on every '
               'fourth curve of the aiconfigurator anchor of that GPU '
               '(anchors.calibrate_overlap): H200 1.0, L40S 0.0; A100 and H100 '
               'take the H200 value',
    'blocks_per_core_limit': 'CUDA C++ Programming Guide, table of compute '
                             'capabilities: 32 resident blocks per SM on sm_80 and '
                             'sm_90, 24 on sm_89',
    'base_registers': 'assumption: registers per thread beyond the f32 '
                      'accumulators (addresses, fragments, loop state); 32',
    'cublas_tiles': 'CTA tiles (M x F) in public cuBLAS/CUTLASS kernel names: sm80/'
                    'sm89 ampere_bf16_s16816gemm_bf16_{64x64,128x64,128x128,'
                    '256x128,128x256}_..._stages_*; sm90 sm90_xmma_gemm_bf16bf16_'
                    'bf16f32_f32_tn_n_tilesize{64x64,64x128,128x128,128x256,256x128}'
                    'x64_warpgroupsize*; split-K via splitKreduce_kernel; M=1 via '
                    'gemv kernels',
}
CALIBRATION = ('GPU pricing constants launch_graph_s, hbm_efficiency, dram_fill_s, '
               'tensor_efficiency, overlap and (Hopper) l2_bandwidth are calibrated on the development anchors '
               '(aiconfigurator bf16 GEMMs on H200 and L40S; one figure per GPU: '
               'the smallest kernel, the GEMV bandwidth line, the best FLOP rate, '
               'and the overlap and Hopper L2 bandwidth that score best on every '
               'fourth curve); see '
               'hardware.PRICING_SOURCES. Nothing else is fitted. Caveat: L40S '
               'overlap 0 scores NFP best but prices latency worse than 0.75 '
               '(T(N) error 0.44 against 0.24): it stands in for the measured '
               'stack\'s kernel-class steps (docs/gpu_pricing.md).')

_SM80_TILES = ((64, 64), (128, 64), (64, 128), (128, 128), (256, 128), (128, 256))
_SM90_TILES = ((64, 64), (64, 128), (128, 128), (128, 256), (256, 128))
_HOPPER_PRICING = dict(launch_graph_s=2.44e-6, launch_eager_s=4e-6,
                       forward_floor_graph_s=3e-6, forward_floor_eager_s=10e-6,
                       hbm_efficiency=0.85, dram_fill_s=1.37e-6,
                       # 4 MB: the smallest GEMVs of the line that set
                       # dram_fill_s (PRICING_SOURCES['fill_full_bytes']).
                       fill_full_bytes=4e6, overlap=1.0,
                       tensor_efficiency=0.84, mma_sync_fraction=0.6,
                       dram_latency_s=0.65e-6, l2_bandwidth=14e12,
                       blocks_per_core_limit=32,
                       base_registers=32, cublas_tiles=_SM90_TILES)
_AMPERE_PRICING = dict(_HOPPER_PRICING, mma_sync_fraction=1.0,
                       dram_latency_s=0.55e-6, l2_bandwidth=7.2e12,
                       cublas_tiles=_SM80_TILES)

_A100_GPU = dict(compute_capability=(8, 0), clock_rate_ghz=1.41,
                 shared_memory_per_block=49152, shared_memory_per_core=167936,
                 shared_memory_per_block_optin=166912, fpus_per_core=64,
                 threads_per_core_limit=2048, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(8, 9, 4), l2_cache_size=41943040, core_count=108)

SPECS = {s.name: s for s in [
    HardwareSpec(
        'h100', 'NVIDIA H100 SXM5 80GB',
        {'bfloat16': 989.4 * _T, 'float16': 989.4 * _T, 'float8': 1978.9 * _T,
         'tf32': 494.7 * _T, 'float32': 66.9 * _T},
        3.35e12, 80 * 2**30, 132, 50 * 2**20,
        ('NVIDIA H100 Tensor Core GPU datasheet (SXM5 column, dense figures)',
         'NVIDIA Hopper architecture whitepaper (132 SMs, 50 MB L2)'),
        gpu=dict(_H100_GPU, memory_bandwidth=3352320000000,
                 l2_cache_size=52428800, device_memory_size=84942979072,
                 core_count=132),
        pricing=_HOPPER_PRICING),
    HardwareSpec(
        'h200', 'NVIDIA H200 SXM 141GB',
        {'bfloat16': 989.4 * _T, 'float16': 989.4 * _T, 'float8': 1978.9 * _T,
         'tf32': 494.7 * _T, 'float32': 66.9 * _T},
        4.8e12, 141 * 10**9, 132, 50 * 2**20,
        ('NVIDIA H200 Tensor Core GPU datasheet (SXM column, dense = half of the '
         'sparse figures)', 'same GH100 die as H100 SXM: 132 SMs, 50 MB L2'),
        gpu=dict(_H100_GPU, memory_bandwidth=4800000000000,
                 l2_cache_size=52428800, device_memory_size=150754820096,
                 core_count=132),
        pricing=_HOPPER_PRICING),
    HardwareSpec(
        'a100', 'NVIDIA A100 SXM4 80GB',
        {'bfloat16': 312 * _T, 'float16': 312 * _T, 'tf32': 156 * _T,
         'float32': 19.5 * _T},
        2.039e12, 80 * 2**30, 108, 40 * 2**20,
        ('NVIDIA A100 Tensor Core GPU datasheet (80GB SXM column, dense)',
         'NVIDIA Ampere GA100 whitepaper (108 SMs, 40 MB L2)'),
        gpu=dict(_A100_GPU, memory_bandwidth=2039040000000,
                 device_memory_size=85100068864),
        pricing=_AMPERE_PRICING),
    HardwareSpec(
        'a100-40gb', 'NVIDIA A100 SXM4 40GB',
        {'bfloat16': 312 * _T, 'float16': 312 * _T, 'tf32': 156 * _T,
         'float32': 19.5 * _T},
        1.555e12, 40 * 2**30, 108, 40 * 2**20,
        ('NVIDIA A100 Tensor Core GPU datasheet (40GB SXM column, dense)',
         'NVIDIA Ampere GA100 whitepaper (108 SMs, 40 MB L2)'),
        gpu=dict(_A100_GPU, memory_bandwidth=1555200000000,
                 device_memory_size=42505273344),
        pricing=_AMPERE_PRICING),
    HardwareSpec(
        'b200', 'NVIDIA B200 (HGX, 180GB)',
        {'bfloat16': 2250 * _T, 'float16': 2250 * _T, 'float8': 4500 * _T,
         'tf32': 1100 * _T, 'float32': 75 * _T},
        8.0e12, 180 * 10**9, 148, 126 * 2**20,
        ('NVIDIA DGX B200 / HGX B200 datasheet (per GPU; dense = half of the '
         'sparse figures)', 'SM count and L2 as reported for GB100 (148 SMs, '
         '126 MB L2); not on the datasheet',
         'gpu fields: NVIDIA Blackwell Tuning Guide (compute capability 10.0, '
         '228 KB shared memory per SM, 227 KB per block, 64K registers and 64 '
         'warps per SM); clock_rate_ghz 1.965 is an estimate (no datasheet '
         'figure); cuDNN 9.10 as for h100'),
        gpu=dict(_H100_GPU, compute_capability=(10, 0), clock_rate_ghz=1.965,
                 memory_bandwidth=8000000000000, l2_cache_size=132120576,
                 device_memory_size=180 * 10**9, core_count=148),
        pricing=dict(_HOPPER_PRICING, l2_bandwidth=28e12)),
    HardwareSpec(
        'l40s', 'NVIDIA L40S 48GB',
        {'bfloat16': 362.05 * _T, 'float16': 362.05 * _T, 'float8': 733 * _T,
         'tf32': 183 * _T, 'float32': 91.6 * _T},
        864e9, 48 * 2**30, 142, 96 * 2**20,
        ('NVIDIA L40S datasheet (dense = half of the sparse figures)',
         'NVIDIA Ada Lovelace architecture whitepaper (AD102: 142 SMs enabled on '
         'L40S, 96 MB L2)',
         'gpu fields: NVIDIA Ada Tuning Guide (compute capability 8.9, 100 KB '
         'shared memory per SM, 99 KB per block, 64K registers and 48 warps per '
         'SM); L40S datasheet boost clock 2.52 GHz; cuDNN 9.10 as for h100'),
        gpu=dict(compute_capability=(8, 9), clock_rate_ghz=2.52,
                 shared_memory_per_block=49152, shared_memory_per_core=102400,
                 shared_memory_per_block_optin=101376, fpus_per_core=128,
                 threads_per_core_limit=1536, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(9, 10, 0), memory_bandwidth=864000000000,
                 l2_cache_size=100663296, device_memory_size=48 * 2**30,
                 core_count=142),
        pricing=dict(_AMPERE_PRICING, launch_graph_s=1.74e-6, hbm_efficiency=0.9,
                     overlap=0.0,
                     tensor_efficiency=0.70, dram_latency_s=0.6e-6,
                     l2_bandwidth=5e12, blocks_per_core_limit=24)),
    # TPU targets: compiled deviceless by libtpu (the tpu-aot extra). `tpu`
    # holds what a deviceless compile and the TPU pricing need:
    #   topology: libtpu's topology name and chips_per_host_bounds (one chip
    #     of a host is compiled for);
    #   mxu_count, mxu_dim: MXUs per chip (all TensorCores) and the systolic
    #     array side; vmem_bytes: VMEM per TensorCore (JAX 0.10.2's Pallas
    #     table, jax/_src/pallas/mosaic/tpu_info.py);
    #   clock_hz: derived as peak bf16 / (2 * mxu_count * mxu_dim**2), since
    #     Google publishes no clock; it converts estimated_cycles to seconds.
    #     v6e: with the 2 MXUs of the docs this gives 3.5 GHz, which XLA:TPU's
    #     own cycle counts rule out (a compute-bound 16384^3 bf16 matmul is
    #     estimated at 21.5 M cycles: 409k FLOP per cycle, more than two
    #     256x256 MXUs do), so its clock is derived with 4 MXU-equivalents
    #     (1.75 GHz; docs/tpu.md);
    #   sublane: rows of a layout tile (T(8,128)), lane: its columns.
    _tpu_spec('v4', 'Google Cloud TPU v4 (one chip, 2 TensorCores)',
              275 * _T, 1200e9, 32 * 2**30, topology=('v4:2x2x1', (2, 2, 1)),
              mxu_count=8, mxu_dim=128, vmem_bytes=16 * 2**20,
              sources=('Cloud TPU docs, "TPU v4" system architecture (275 '
                       'TFLOPs bf16, 32 GiB HBM2 at 1200 GBps, 2 TensorCores '
                       'of 4 MXUs)',)),
    _tpu_spec('v5e', 'Google Cloud TPU v5e (one chip, 1 TensorCore)',
              197 * _T, 819e9, 16 * 10**9, topology=('v5e:2x2', (2, 2, 1)),
              mxu_count=4, mxu_dim=128, vmem_bytes=128 * 2**20,
              int8=394 * _T,
              sources=('Cloud TPU docs, "TPU v5e" system architecture (197 '
                       'TFLOPs bf16, 394 TOPs int8, 16 GB HBM2 at 819 GBps, '
                       'one TensorCore of 4 MXUs)',)),
    _tpu_spec('v5p', 'Google Cloud TPU v5p (one chip, 2 TensorCores)',
              459 * _T, 2765e9, 95 * 2**30, topology=('v5p:2x2x1', (2, 2, 1)),
              mxu_count=8, mxu_dim=128, vmem_bytes=64 * 2**20,
              sources=('Cloud TPU docs, "TPU v5p" system architecture (459 '
                       'TFLOPs bf16, 95 GiB HBM2e at 2765 GBps, 2 TensorCores '
                       'of 4 MXUs each)',)),
    _tpu_spec('v6e', 'Google Cloud TPU v6e Trillium (one chip, 1 TensorCore)',
              918 * _T, 1640e9, 32 * 10**9, topology=('v6e:2x2', (2, 2, 1)),
              mxu_count=2, mxu_dim=256, vmem_bytes=128 * 2**20,
              int8=1836 * _T, clock_mxus=4,
              sources=('Cloud TPU docs, "TPU v6e" system architecture (918 '
                       'TFLOPs bf16, 1836 TOPs int8, 32 GB HBM, one TensorCore '
                       'of 2 MXUs); HBM bandwidth 1640 GBps as in the v6e spec '
                       'table (JAX\'s Pallas table: 1.64e12; the v5e comparison '
                       'row rounds to 1600)',)),
]}


@dataclasses.dataclass(frozen=True)
class Balance:
  """The hardware balance a prediction or baseline uses, with where it came from."""
  name: str
  dtype: str
  peak_flops: float
  bandwidth: float  # bytes/s
  source: str  # 'spec' or 'microbenchmark'
  call_floor_s: float = 0.0  # trivial compiled call, dispatch + launch
  kernel_overhead_s: float = 0.0  # each further kernel (thunk) of a call
  # Buffers of at least fresh_threshold_bytes are new memory on every call
  # (page-faulted on first touch) and are written at fault_bandwidth.
  fault_bandwidth: float | None = None
  fresh_threshold_bytes: int | None = None
  sm_count: int | None = None
  l2_bytes: int | None = None
  details: dict = dataclasses.field(default_factory=dict)

  @property
  def ridge(self) -> float:
    """FLOPs per byte at which compute time equals memory time."""
    return self.peak_flops / self.bandwidth

  def to_dict(self) -> dict:
    return dict(dataclasses.asdict(self), ridge=self.ridge)


def spec_balance(name: str, dtype: str) -> Balance:
  """The balance of a spec-table accelerator for a compute dtype."""
  spec = SPECS[name]
  if dtype not in spec.peak_flops:
    raise errors.ConfigError(f'{spec.description} has no {dtype} peak in the '
                             'spec table.')
  return Balance(name=name, dtype=dtype, peak_flops=spec.peak_flops[dtype],
                 bandwidth=spec.memory_bandwidth, source='spec',
                 sm_count=spec.sm_count, l2_bytes=spec.l2_bytes,
                 details={'description': spec.description,
                          'sources': list(spec.sources)})


def _median_time(fn, args, repeats: int) -> float:
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _device_put(x, device):
  return jax.device_put(x, device) if device is not None else x


_MIB = 2**20
# glibc maps blocks above 32 MiB afresh on every call; smaller ones are reused
# once the dynamic threshold has risen, so the sizes straddle 32 MiB.
_FRESH_SIZES_MIB = (8, 16, 24, 28, 31, 32, 33, 40, 64)


def _chain_of_dots(count: int):
  def chain(x, w):
    for _ in range(count):
      x = jnp.tanh(x @ w)
    return x
  return chain


def kernel_count(fn, args) -> int:
  """How many kernels the compiled `fn(*args)` launches, read from its
  optimized HLO (hlo.read_kernels), not assumed from the source."""
  return len(measure.compile_forward(fn, args, read=True).hlo.kernels())


def measure_local(dtype: str, device=None, repeats: int = 5) -> Balance:
  """Microbenchmarks the local device for one compute dtype.

  All on fixed shapes, never those of a block under study:
  peak: best of square matmuls (1024, 2048) in `dtype`;
  bandwidth: best of reading a 256 MiB float32 array (row sums, and a GEMV over
    the same array viewed as 8192x8192), which stream every byte once and write
    almost nothing;
  call floor: a trivial compiled call (x + 1 on one element), dispatch included;
  kernel overhead: the slope of a chain of 1 vs 33 tiny dependent matmuls
    (each followed by a tanh), per kernel as the compiled programs count them;
  fresh buffers: a program whose temp buffer is 8..64 MiB (a bfloat16 matrix
    converted to float32, then a GEMV over it: the converted copy is the
    temp, as a bfloat16 block's converted weights are). From some size on the
    allocator hands out new pages on every call (glibc: mmap above its
    threshold, pinned at 32 MiB) and the call slows to page-fault speed: the
    smallest such size (more than 4x slower per byte than the faster of 8 and
    16 MiB) is fresh_threshold_bytes; fault_bandwidth is the temp's bytes over
    the time beyond what that speed gives. A broadcast into a fresh output was
    used before: its threshold read 33 MiB in one measurement and 64 MiB in
    another on the same machine (outputs outlive the call), the temp's did not.
  """
  device = device or jax.devices()[0]
  details = {'matmul_flops': {}, 'read_bandwidth': {}, 'fresh_write': {},
             'allocator': measure.pin_allocator()}
  for n in (1024, 2048):
    a = _device_put(jnp.ones((n, n), dtype), device)
    t = _median_time(lambda x, y: x @ y, (a, a), repeats)
    details['matmul_flops'][str(n)] = 2 * n**3 / t
  big = _device_put(jnp.ones((8192, 8192), jnp.float32), device)  # 256 MiB
  vec = _device_put(jnp.ones((8192,), jnp.float32), device)
  nbytes = big.size * 4
  details['read_bandwidth']['row_sum'] = nbytes / _median_time(
      lambda x: jnp.sum(x, axis=1), (big,), repeats)
  details['read_bandwidth']['gemv'] = nbytes / _median_time(
      lambda x, v: x @ v, (big, vec), repeats)
  del big
  one = _device_put(jnp.ones((1,), jnp.float32), device)
  floor = _median_time(lambda x: x + 1, (one,), 200)
  tiny = _device_put(jnp.ones((8, 8), jnp.float32), device)
  chain = [_median_time(_chain_of_dots(k), (tiny, tiny), 200) for k in (1, 33)]
  kernels = [kernel_count(_chain_of_dots(k), (tiny, tiny)) for k in (1, 33)]
  details['overhead_chain_kernels'] = kernels
  kernel_overhead = max(0.0, (chain[1] - chain[0]) / max(kernels[1] - kernels[0], 1))
  row = _device_put(jnp.ones((1024,), jnp.float32), device)
  for mib in _FRESH_SIZES_MIB:
    w = _device_put(jnp.ones((mib * _MIB // 4 // 1024, 1024), jnp.bfloat16), device)
    t = _median_time(lambda w, v: w.astype(jnp.float32) @ v, (w, row), repeats + 4)
    details['fresh_write'][str(mib)] = mib * _MIB / t
    del w
  small = max(details['fresh_write'][str(m)] for m in _FRESH_SIZES_MIB[:2])
  slow = [m for m in _FRESH_SIZES_MIB if details['fresh_write'][str(m)] < small / 4]
  fault_s = [mib * _MIB / details['fresh_write'][str(mib)] - mib * _MIB / small
             for mib in slow]
  details['device_kind'] = device.device_kind
  details['platform'] = device.platform
  details['machine'] = machine_key(device)
  details['measured_at'] = datetime.datetime.now(datetime.timezone.utc).isoformat()
  return Balance(
      name=f'local-{device.platform}', dtype=dtype,
      peak_flops=max(details['matmul_flops'].values()),
      bandwidth=max(details['read_bandwidth'].values()),
      source='microbenchmark', call_floor_s=floor,
      kernel_overhead_s=kernel_overhead,
      fault_bandwidth=(min(m * _MIB / t for m, t in zip(slow, fault_s))
                       if slow else None),
      fresh_threshold_bytes=slow[0] * _MIB if slow else None, details=details)


def last_level_cache_bytes() -> int | None:
  """The largest CPU cache of this machine (sysfs), or None where unreadable."""
  sizes = []
  for index in pathlib.Path('/sys/devices/system/cpu/cpu0/cache').glob('index*'):
    try:
      text = (index / 'size').read_text().strip()
    except OSError:
      continue
    scale = {'K': 2**10, 'M': 2**20, 'G': 2**30}.get(text[-1:], 1)
    try:
      sizes.append(int(text.rstrip('KMG')) * scale)
    except ValueError:
      continue
  return max(sizes) if sizes else None


def bandwidth_sentinel(device=None) -> tuple:
  """(call, bytes): a short streaming read of a fixed float32 buffer, for one
  timing per round beside the swept N. The buffer is 4x the last-level cache,
  kept within 64-256 MiB, so every call streams it from memory."""
  device = device or jax.devices()[0]
  llc = last_level_cache_bytes() if device.platform == 'cpu' else None
  nbytes = int(min(max(4 * (llc or 0), 64 * _MIB), 256 * _MIB))
  buffer = _device_put(jnp.ones((nbytes // 4 // 1024, 1024), jnp.float32), device)
  read = jax.jit(lambda x: jnp.sum(x, axis=1)).lower(buffer).compile()
  return (lambda: jax.block_until_ready(read(buffer))), nbytes


def available_memory_bytes(device=None) -> int | None:
  """Memory a block measured on `device` can use: an accelerator's own limit
  (memory_stats), or on the CPU what this machine can still give a process
  (MemAvailable of /proc/meminfo, else physical pages x page size). None where
  it is not known."""
  if device is not None and device.platform != 'cpu':
    stats = device.memory_stats() or {}
    return stats.get('bytes_limit')
  try:
    for line in pathlib.Path('/proc/meminfo').read_text().splitlines():
      if line.startswith('MemAvailable:'):
        return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None


def cache_file(name: str) -> str:
  """Where this user's measurements of this machine are cached:
  $XDG_CACHE_HOME/nfp_jax/NAME (~/.cache when unset); 'hardware.json' holds
  the balances, 'probe.json' the granularity probe."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(root, 'nfp_jax', name)


def _cpuinfo_field(name: str) -> str | None:
  """The first value of a /proc/cpuinfo field (None where there is none)."""
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.split(':', 1)[0].strip() == name:
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return None


# The vector-ISA flags that decide which XLA:CPU / YNNPACK kernels run.
ISA_FLAGS = ('sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw',
             'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16',
             'amx_tile', 'amx_bf16', 'amx_int8', 'asimd', 'sve', 'sve2')


def cpu_description() -> dict:
  """The local CPU as a result should name it: model, the vector-ISA flags
  that matter to XLA:CPU's kernels, and the core count."""
  flags = set((_cpuinfo_field('flags') or _cpuinfo_field('Features') or '').split())
  return dict(model=(_cpuinfo_field('model name') or platform.processor()
                     or platform.machine()),
              isa_flags=[f for f in ISA_FLAGS if f in flags],
              cpu_count=os.cpu_count())


def machine_key(device=None) -> str:
  """Identifies the machine a cached balance belongs to."""
  device = device or jax.devices()[0]
  cpu = (_cpuinfo_field('model name') or platform.processor()
         or platform.machine())
  return (f'{platform.node()}|{device.platform}|{device.device_kind}|{cpu}|'
          f'{os.cpu_count()} cpus|jax {jax.__version__}')


_CACHE_VERSION = 7  # bump when measure_local measures something new


BALANCE_SPOT_LIMIT = 0.25  # a cached peak off by more than this is re-measured


def spot_check_balance(fields: dict, device=None, timer=None) -> dict:
  """Re-times the 1024^3 matmul of the cached balance (median of 15 calls,
  well under a second; of 5, one slow call in three moved it by 15-20%):
  `moved` when its FLOP rate is off the cached one by more than
  BALANCE_SPOT_LIMIT (bandwidth drifts with the neighbours by itself, so a
  sweep's own sentinel measures it)."""
  cached = (fields.get('details') or {}).get('matmul_flops', {}).get('1024')
  if not cached:
    return dict(moved=False, reason='no cached 1024 matmul rate')
  if timer is None:
    a = _device_put(jnp.ones((1024, 1024), fields['dtype']), device or jax.devices()[0])
    timer = lambda: _median_time(lambda x, y: x @ y, (a, a), 15)
  now = 2 * 1024**3 / timer()
  return dict(cached_flops=cached, now_flops=now,
              moved=abs(now - cached) > BALANCE_SPOT_LIMIT * cached)


def local_balance(dtype: str, cache_file: str | None = None, device=None,
                  refresh: bool = False, progress=None, timer=None) -> Balance:
  """The measured balance of the local device, cached per machine and dtype;
  a cached balance whose spot check fails is measured again (one line)."""
  key = f'{machine_key(device)}|{dtype}|v{_CACHE_VERSION}'

  def verify(cached):
    check = spot_check_balance(cached, device, timer)
    if check['moved']:
      (progress or (lambda m: print(m, file=sys.stderr)))(
          f"balance: the cached {dtype} matmul rate "
          f"{check['cached_flops'] / 1e9:.0f} GFLOP/s is now "
          f"{check['now_flops'] / 1e9:.0f}; measuring the balance again")
    return not check['moved']

  fields = results.cached(cache_file, key,
                          lambda: measure_local(dtype, device).to_dict(), refresh,
                          verify)
  return Balance(**{k: v for k, v in fields.items() if k != 'ridge'})
