"""The timing harness: AOT compile once per N, interleaved randomized rounds
(adaptive: extra rounds for the N still ambiguous), every sample kept, R(N) as
the median of paired per-round ratios T_r(N)/T_r(1) with its order-statistic CI.

Only the forward is timed: weights, KV cache and inputs are made before.
"""

import ctypes
import ctypes.util
import dataclasses
import gc
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from nfp_jax import errors


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


def cost_dict(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device
    cost = cost[0] if cost else {}
  keep = {}
  for key, value in (cost or {}).items():
    if key in ('flops', 'bytes accessed', 'transcendentals', 'optimal_seconds',
               'utilization') or key.startswith('bytes accessed'):
      keep[key] = float(value)
  return keep


def memory_dict(compiled) -> dict:
  memory = compiled.memory_analysis()
  if memory is None:
    return {}
  names = ('argument_size_in_bytes', 'output_size_in_bytes',
           'temp_size_in_bytes', 'alias_size_in_bytes',
           'generated_code_size_in_bytes')
  return {n: int(getattr(memory, n)) for n in names if hasattr(memory, n)}


def compile_forward(fn: Callable, args, compiler_options: dict | None = None
                    ) -> CompiledForward:
  """jit(fn).lower(*args).compile(), with lower and compile timed apart."""
  start = time.perf_counter()
  lowered = jax.jit(fn).lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile(compiler_options or None)
  done = time.perf_counter()
  return CompiledForward(compiled, lowered_at - start, done - lowered_at,
                         cost_dict(compiled), memory_dict(compiled))


@dataclasses.dataclass(frozen=True)
class RoundPlan:
  """How many timed rounds a curve gets (adaptive between the bounds).

  The first `min_rounds` rounds time every N; after them a round is run only
  while `time_budget_s` of timing is left, fewer than `max_rounds` were run and
  the caller still names ambiguous N. `fixed(k)` is min = max = k (--repeats).
  """
  min_rounds: int = 15
  max_rounds: int = 200
  time_budget_s: float = 15.0

  @classmethod
  def fixed(cls, rounds: int) -> 'RoundPlan':
    return cls(rounds, rounds, float('inf'))

  def check(self) -> 'RoundPlan':
    """errors.ConfigError (one sentence) for a plan that cannot run."""
    if not self.time_budget_s > 0:
      raise errors.ConfigError(
          f'The time budget must be positive, got {self.time_budget_s:g} s.')
    if self.min_rounds < 3:
      raise errors.ConfigError(
          f'At least 3 rounds are needed for paired statistics, got {self.min_rounds}.')
    if self.min_rounds > self.max_rounds:
      raise errors.ConfigError(
          f'min_rounds ({self.min_rounds}) exceeds max_rounds ({self.max_rounds}).')
    return self


def time_rounds(calls: Mapping[int, Callable[[], Any]], plan: RoundPlan,
                ambiguous: Callable[[dict], Sequence[int]] = lambda _: (),
                warmup: int = 2, seed: int = 0,
                on_round: Callable[[int], None] | None = None,
                clock: Callable[[], float] = time.perf_counter
                ) -> dict[int, np.ndarray]:
  """Times each call once per round, in a fresh random order every round.

  Each call must block until its result is ready. The first key is the base of
  every ratio and is timed in every round. The first plan.min_rounds rounds
  time every key; after that `ambiguous(samples so far)` names the keys that
  still need rounds, and only they (with the base, in random order) are timed,
  until it names none, plan.max_rounds rounds were run or plan.time_budget_s
  seconds of `clock` have passed since the first timed round. Garbage
  collection is paused while timing.

  Returns:
    key -> float64 array [rounds run] of seconds; NaN where a key was not
    timed in that round. Sample r of every key comes from round r, so ratios
    can be paired by round.
  """
  pin_allocator()
  keys = list(calls)
  for key in keys:
    for _ in range(warmup):
      calls[key]()
  rows = {key: [] for key in keys}
  rng = np.random.default_rng(seed)
  gc_was_enabled = gc.isenabled()
  gc.disable()
  start = clock()
  try:
    for r in range(plan.max_rounds):
      todo = keys
      if r >= plan.min_rounds:
        if clock() - start >= plan.time_budget_s:
          break
        wanted = set(ambiguous({k: np.asarray(v) for k, v in rows.items()}))
        if not wanted:
          break
        todo = [k for k in keys if k == keys[0] or k in wanted]
      for key in keys:
        rows[key].append(np.nan)
      for i in rng.permutation(len(todo)):
        call = calls[todo[i]]
        t0 = clock()
        call()
        rows[todo[i]][r] = clock() - t0
      if on_round:
        on_round(r)
  finally:
    if gc_was_enabled:
      gc.enable()
  return {key: np.asarray(v, dtype=np.float64) for key, v in rows.items()}


def time_interleaved(calls: Mapping[int, Callable[[], Any]], rounds: int,
                     warmup: int = 2, seed: int = 0,
                     on_round: Callable[[int], None] | None = None
                     ) -> dict[int, np.ndarray]:
  """time_rounds with a fixed number of rounds: key -> [rounds] seconds."""
  return time_rounds(calls, RoundPlan.fixed(rounds), warmup=warmup, seed=seed,
                     on_round=on_round)


def paired_ratios(samples: np.ndarray, base: np.ndarray) -> np.ndarray:
  """T_r(N)/T_r(1) of the rounds that timed both (NaN marks an untimed one)."""
  ratios = np.asarray(samples, float) / np.asarray(base, float)
  return ratios[np.isfinite(ratios)]


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int]:
  """0-based ranks (lo, hi) of the distribution-free CI of a median from n
  sorted values: the largest k with P(Binomial(n, 1/2) < k) <= (1-level)/2
  gives [x_(k), x_(n-k+1)] (1-based). Below 6 values no k reaches 95%; the
  interval is then the whole range (coverage 1 - 2^(1-n))."""
  alpha = (1 - level) / 2
  cdf, k = 0.0, 0
  while k < n and cdf + math.comb(n, k) / 2**n <= alpha:
    cdf += math.comb(n, k) / 2**n
    k += 1
  k = max(k, 1)
  return k - 1, n - k


def ratio_ci(samples: np.ndarray, base: np.ndarray, level: float = 0.95,
             **_) -> tuple[float, float, float]:
  """R(N) and its CI from the paired per-round ratios T_r(N)/T_r(1).

  R is the median of the paired ratios: pairing by round cancels a slow round
  that hit every N alike, and the median ignores the odd slow call. The CI is
  the distribution-free order-statistic interval of a median (binomial ranks,
  median_ci_ranks): valid for any continuous ratio distribution, exact in
  coverage (>= level), and never clipped to contain R.
  """
  ratios = np.sort(paired_ratios(samples, base))
  lo, hi = median_ci_ranks(len(ratios), level)
  return float(np.median(ratios)), float(ratios[lo]), float(ratios[hi])
