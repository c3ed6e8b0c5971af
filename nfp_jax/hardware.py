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
import time

import jax
import jax.numpy as jnp
import numpy as np

from nfp_jax import errors
from nfp_jax import hlo
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


_H100_GPU = dict(compute_capability=(9, 0), clock_rate_ghz=1.98,
                 shared_memory_per_block=49152, shared_memory_per_core=233472,
                 shared_memory_per_block_optin=232448, fpus_per_core=128,
                 threads_per_core_limit=2048, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(9, 10, 0))

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
                 core_count=132)),
    HardwareSpec(
        'h200', 'NVIDIA H200 SXM 141GB',
        {'bfloat16': 989.4 * _T, 'float16': 989.4 * _T, 'float8': 1978.9 * _T,
         'tf32': 494.7 * _T, 'float32': 66.9 * _T},
        4.8e12, 141 * 10**9, 132, 50 * 2**20,
        ('NVIDIA H200 Tensor Core GPU datasheet (SXM column, dense = half of the '
         'sparse figures)', 'same GH100 die as H100 SXM: 132 SMs, 50 MB L2'),
        gpu=dict(_H100_GPU, memory_bandwidth=4800000000000,
                 l2_cache_size=52428800, device_memory_size=150754820096,
                 core_count=132)),
    HardwareSpec(
        'a100', 'NVIDIA A100 SXM4 80GB',
        {'bfloat16': 312 * _T, 'float16': 312 * _T, 'tf32': 156 * _T,
         'float32': 19.5 * _T},
        2.039e12, 80 * 2**30, 108, 40 * 2**20,
        ('NVIDIA A100 Tensor Core GPU datasheet (80GB SXM column, dense)',
         'NVIDIA Ampere GA100 whitepaper (108 SMs, 40 MB L2)'),
        gpu=dict(compute_capability=(8, 0), clock_rate_ghz=1.41,
                 shared_memory_per_block=49152, shared_memory_per_core=167936,
                 shared_memory_per_block_optin=166912, fpus_per_core=64,
                 threads_per_core_limit=2048, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(8, 9, 4), memory_bandwidth=2039040000000,
                 l2_cache_size=41943040, device_memory_size=85100068864,
                 core_count=108)),
    HardwareSpec(
        'a100-40gb', 'NVIDIA A100 SXM4 40GB',
        {'bfloat16': 312 * _T, 'float16': 312 * _T, 'tf32': 156 * _T,
         'float32': 19.5 * _T},
        1.555e12, 40 * 2**30, 108, 40 * 2**20,
        ('NVIDIA A100 Tensor Core GPU datasheet (40GB SXM column, dense)',
         'NVIDIA Ampere GA100 whitepaper (108 SMs, 40 MB L2)'),
        gpu=dict(compute_capability=(8, 0), clock_rate_ghz=1.41,
                 shared_memory_per_block=49152, shared_memory_per_core=167936,
                 shared_memory_per_block_optin=166912, fpus_per_core=64,
                 threads_per_core_limit=2048, threads_per_block_limit=1024,
                 registers_per_core_limit=65536, registers_per_block_limit=65536,
                 dnn_version=(8, 9, 4), memory_bandwidth=1555200000000,
                 l2_cache_size=41943040, device_memory_size=42505273344,
                 core_count=108)),
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
                 device_memory_size=180 * 10**9, core_count=148)),
    HardwareSpec(
        'l40s', 'NVIDIA L40S 48GB',
        {'bfloat16': 362.05 * _T, 'float16': 362.05 * _T, 'float8': 733 * _T,
         'tf32': 183 * _T, 'float32': 91.6 * _T},
        864e9, 48 * 2**30, 142, 96 * 2**20,
        ('NVIDIA L40S datasheet (dense = half of the sparse figures)',
         'NVIDIA Ada Lovelace architecture whitepaper (AD102: 142 SMs enabled on '
         'L40S, 96 MB L2)'),
        gpu=None),
    HardwareSpec(
        'tpu-v5e', 'Google Cloud TPU v5e (one chip)',
        {'bfloat16': 197 * _T, 'int8': 394 * _T},
        819e9, 16 * 2**30, None, None,
        ('Google Cloud TPU v5e documentation, system architecture page',),
        gpu=None),
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
  return _median_time_and_kernels(fn, args, repeats)[0]


def _median_time_and_kernels(fn, args, repeats: int) -> tuple[float, int]:
  """(median seconds of a call, kernels in its compiled HLO)."""
  compiled = jax.jit(fn).lower(*args).compile()
  kernels = hlo.count_kernels(compiled.as_text())
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)), kernels


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


def measure_local(dtype: str, device=None, repeats: int = 5) -> Balance:
  """Microbenchmarks the local device for one compute dtype.

  All on fixed shapes, never those of a block under study:
  peak: best of square matmuls (1024, 2048) in `dtype`;
  bandwidth: best of reading a 256 MiB float32 array (row sums, and a GEMV over
    the same array viewed as 8192x8192), which stream every byte once and write
    almost nothing;
  call floor: a trivial compiled call (x + 1 on one element), dispatch included;
  kernel overhead: the slope of a chain of 1 vs 33 tiny dependent matmuls
    (with tanh), per kernel counted in each chain's compiled HLO;
  fresh buffers: a broadcast into a new output of 8..64 MiB. From some size on
    the allocator hands out new pages on every call (glibc: mmap at >= 32 MiB)
    and the write runs at page-fault speed: the smallest such size is
    fresh_threshold_bytes, the write speed above it fault_bandwidth.
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
  chain = [_median_time_and_kernels(_chain_of_dots(k), (tiny, tiny), 200)
           for k in (1, 33)]
  # Per kernel: the kernel counts come from the compiled HLO (a chain of 33
  # dots with tanh need not compile to 33 kernels more than a chain of one).
  details['overhead_chain_kernels'] = [k for _, k in chain]
  kernel_overhead = max(0.0, (chain[1][0] - chain[0][0])
                        / max(1, chain[1][1] - chain[0][1]))
  for mib in _FRESH_SIZES_MIB:
    n = mib * _MIB // 4
    t = _median_time(lambda s, n=n: jnp.broadcast_to(s, (n,)) * 1.0, (one,),
                     repeats + 4)
    details['fresh_write'][str(mib)] = mib * _MIB / t
  small = details['fresh_write'][str(_FRESH_SIZES_MIB[0])]
  slow = [m for m in _FRESH_SIZES_MIB if details['fresh_write'][str(m)] < small / 8]
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
      fault_bandwidth=(min(details['fresh_write'][str(m)] for m in slow)
                       if slow else None),
      fresh_threshold_bytes=slow[0] * _MIB if slow else None, details=details)


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


def machine_key(device=None) -> str:
  """Identifies the machine a cached balance belongs to."""
  device = device or jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  return (f'{platform.node()}|{device.platform}|{device.device_kind}|{cpu}|'
          f'{os.cpu_count()} cpus|jax {jax.__version__}')


_CACHE_VERSION = 6  # bump when measure_local measures something new


def local_balance(dtype: str, cache_file: str | None = None, device=None,
                  refresh: bool = False) -> Balance:
  """The measured balance of the local device, cached per machine and dtype."""
  key = f'{machine_key(device)}|{dtype}|v{_CACHE_VERSION}'
  fields = results.cached(cache_file, key,
                          lambda: measure_local(dtype, device).to_dict(), refresh)
  return Balance(**{k: v for k, v in fields.items() if k != 'ridge'})
