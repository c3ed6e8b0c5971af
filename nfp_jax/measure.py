"""The timing harness: AOT compile once per N, interleaved randomized rounds,
every sample kept, medians and paired-bootstrap CIs of R(N) = T(N)/T(1).

Only the forward is timed: weights, KV cache and inputs are made before.
"""

import ctypes
import ctypes.util
import dataclasses
import gc
import pathlib
import tempfile
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from nfp_jax import hlo


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest dynamic mmap threshold
_allocator_settings = None


def pin_allocator() -> dict:
  """Fixes glibc malloc's thresholds for the rest of the process.

  glibc maps large blocks afresh (page faults on every first touch) above a
  threshold that it raises as blocks are freed. Interleaving the executables
  of many N, with temp buffers of many sizes, moves that threshold around, so
  whether a call pays page faults would depend on which call ran before it.
  Pinning the threshold at 32 MiB (where the dynamic one settles for a single
  executable called over and over) and the trim threshold at twice that makes
  every call of an executable allocate alike. Idempotent; returns the settings
  (recorded in provenance), or {'allocator': 'not glibc'} where there is none.
  """
  global _allocator_settings
  if _allocator_settings is None:
    try:
      libc = ctypes.CDLL(ctypes.util.find_library('c'))
      ok = (libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD))
    except (OSError, AttributeError, TypeError):
      ok = False
    _allocator_settings = (
        {'allocator': 'glibc', 'mmap_threshold': _MMAP_THRESHOLD,
         'trim_threshold': 2 * _MMAP_THRESHOLD} if ok else {'allocator': 'not glibc'})
  return dict(_allocator_settings)


@dataclasses.dataclass(frozen=True)
class CompiledForward:
  """One AOT-compiled forward and what XLA says of it."""
  executable: Any
  lower_s: float
  compile_s: float
  cost: dict  # cost_analysis(): flops, bytes accessed, ...
  memory: dict  # memory_analysis(): buffer sizes in bytes
  hlo: Any = None  # hlo.CompiledHlo (its kernels) when compiled with read=True


def compile_forward(fn: Callable, args, compiler_options: dict | None = None,
                    *, read: bool = False, positions: int = 0
                    ) -> CompiledForward:
  """jit(fn).lower(*args).compile(), with lower and compile timed apart.

  With `read`, the same compile also dumps the program to a temporary folder
  and `hlo` holds what hlo.read_compiled reads of it (kernels, GEMV tiles), so
  the executable that is timed is the one whose kernels are read and priced:
  one compile per N.
  """
  with tempfile.TemporaryDirectory(prefix='nfp_jax_dump_') as tmp:
    folder = pathlib.Path(tmp) / f'n{positions}'
    options = (hlo.dump_options(compiler_options, folder) if read
               else compiler_options or None)
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile(options)
    done = time.perf_counter()
    record = None
    if read:
      device = next(iter(jax.tree.leaves(args)[0].devices()))
      record = hlo.read_compiled(
          compiled, positions, folder, target=device.platform,
          device_kind=device.device_kind,
          compiler_options=compiler_options, lower_s=lowered_at - start,
          compile_s=done - lowered_at)
  return CompiledForward(compiled, lowered_at - start, done - lowered_at,
                         hlo.cost_dict(compiled), hlo.memory_dict(compiled), record)


def time_interleaved(calls: Mapping[int, Callable[[], Any]], rounds: int,
                     warmup: int = 2, seed: int = 0,
                     on_round: Callable[[int], None] | None = None
                     ) -> dict[int, np.ndarray]:
  """Times each call once per round, in a fresh random order every round.

  Each call must block until its result is ready. Sample r of every key comes
  from round r, so ratios can be paired by round. Garbage collection is paused
  while timing.

  Returns:
    key -> float64 array [rounds] of seconds.
  """
  pin_allocator()
  keys = list(calls)
  for key in keys:
    for _ in range(warmup):
      calls[key]()
  samples = {key: np.empty(rounds) for key in keys}
  rng = np.random.default_rng(seed)
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for r in range(rounds):
      for i in rng.permutation(len(keys)):
        call = calls[keys[i]]
        start = time.perf_counter()
        call()
        samples[keys[i]][r] = time.perf_counter() - start
      if on_round:
        on_round(r)
  finally:
    if gc_was_enabled:
      gc.enable()
  return samples


def ratio_ci(samples: np.ndarray, base: np.ndarray, level: float = 0.95,
             n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
  """R = median(samples)/median(base) and a paired bootstrap CI over rounds.

  Rounds (not single samples) are resampled, so a slow round that slowed every
  N alike moves numerator and denominator together.
  """
  samples, base = np.asarray(samples), np.asarray(base)
  ratio = float(np.median(samples) / np.median(base))
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(base), size=(n_boot, len(base)))
  boot = np.median(samples[idx], axis=1) / np.median(base[idx], axis=1)
  alpha = (1 - level) / 2
  lo, hi = np.quantile(boot, [alpha, 1 - alpha])
  return ratio, min(float(lo), ratio), max(float(hi), ratio)
