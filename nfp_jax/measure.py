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


@dataclasses.dataclass(frozen=True)
class RoundPlan:
  """How many rounds to time: at least `min_rounds` of every N, then rounds on
  the N still undecided until decided, `max_rounds` or `time_budget_s` of
  timing. fixed(n): exactly n rounds of every N."""
  min_rounds: int = 15
  max_rounds: int = 200
  time_budget_s: float | None = 20.0

  @classmethod
  def fixed(cls, rounds: int) -> 'RoundPlan':
    return cls(rounds, rounds, None)

  def checked(self) -> 'RoundPlan':
    """Itself, or errors.ConfigError (one sentence) for a plan that cannot run."""
    from nfp_jax import errors  # pylint: disable=g-import-not-at-top
    if self.min_rounds < 3:
      raise errors.ConfigError(f'At least 3 rounds are needed for a CI, got '
                               f'{self.min_rounds}.')
    if self.min_rounds > self.max_rounds:
      raise errors.ConfigError(f'--min_rounds ({self.min_rounds}) is more than '
                               f'--max_rounds ({self.max_rounds}).')
    if self.time_budget_s is not None and self.time_budget_s <= 0:
      raise errors.ConfigError(f'--time_budget_s must be positive, got '
                               f'{self.time_budget_s:g}.')
    return self


@dataclasses.dataclass
class Rounds:
  """What time_rounds timed: seconds per key and round (NaN where a round did
  not time that key), the sentinel's seconds and the conditions per round."""
  samples: dict  # key -> np.ndarray [rounds]
  sentinel_s: np.ndarray  # [rounds]; empty without a sentinel
  conditions: list  # per round: conditions.round_record
  stopped: str  # 'decided', 'time budget', 'max rounds' or 'fixed rounds'
  timed_s: float  # inside the timed calls

  def rounds_per_key(self) -> dict:
    return {k: int(np.isfinite(v).sum()) for k, v in self.samples.items()}


def time_rounds(calls: Mapping[Any, Callable[[], Any]], *, min_rounds: int,
                max_rounds: int | None = None, time_budget_s: float | None = None,
                warmup: int = 2, seed: int = 0,
                undecided: Callable[[dict], set] | None = None,
                check_every: int = 5, sentinel: Callable[[], Any] | None = None,
                clock: Callable[[], float] = time.perf_counter,
                on_round: Callable[[int, int], None] | None = None) -> Rounds:
  """Times each call once per round, in a fresh random order every round.

  The first `min_rounds` rounds time every key. Then, while `undecided(samples)`
  (checked every `check_every` rounds) names keys still in question, further
  rounds time the first key (the base of every ratio) and those keys only, so
  each extra sample is still paired with the base in its round, until nothing
  is undecided, `max_rounds` or the `time_budget_s` (of timing, on `clock`) is
  spent. `sentinel` (a bandwidth probe) runs once per round at a random place
  among the calls. Each call must block until its result is ready. Garbage
  collection is paused while timing.
  """
  from nfp_jax import conditions  # pylint: disable=g-import-not-at-top
  pin_allocator()
  max_rounds = max(max_rounds or min_rounds, min_rounds)
  keys = list(calls)
  for key in keys:
    for _ in range(warmup):
      calls[key]()
  if sentinel is not None:
    sentinel()
  samples = {key: np.full(max_rounds, np.nan) for key in keys}
  sentinel_s = np.full(max_rounds, np.nan)
  records = []
  rng = np.random.default_rng(seed)
  active = keys
  stopped = 'fixed rounds' if max_rounds == min_rounds else 'max rounds'
  gc_was_enabled = gc.isenabled()
  gc.disable()
  start = clock()
  try:
    for r in range(max_rounds):
      if r >= min_rounds and undecided is not None and (
          r == min_rounds or (r - min_rounds) % check_every == 0):
        left = undecided({k: v[:r] for k, v in samples.items()})
        if not left:
          stopped = 'decided'
          break
        active = [keys[0]] + [k for k in keys[1:] if k in left]
      if r >= min_rounds and time_budget_s is not None and (
          clock() - start >= time_budget_s):
        stopped = 'time budget'
        break
      order = list(rng.permutation(len(active) + (sentinel is not None)))
      before = conditions.snapshot()
      for i in order:
        if i == len(active):
          t0 = clock()
          sentinel()
          sentinel_s[r] = clock() - t0
          continue
        call = calls[active[i]]
        t0 = clock()
        call()
        samples[active[i]][r] = clock() - t0
      records.append(conditions.round_record(before, conditions.snapshot()))
      if on_round:
        on_round(r, len(active))
  finally:
    if gc_was_enabled:
      gc.enable()
  n = len(records)
  trimmed = {k: v[:n] for k, v in samples.items()}
  return Rounds(trimmed, sentinel_s[:n] if sentinel is not None else np.array([]),
                records, stopped,
                float(sum(np.nansum(v) for v in trimmed.values())))


def time_interleaved(calls: Mapping[int, Callable[[], Any]], rounds: int,
                     warmup: int = 2, seed: int = 0,
                     on_round: Callable[[int], None] | None = None
                     ) -> dict[int, np.ndarray]:
  """A fixed number of rounds of every call (time_rounds without adapting).

  Returns:
    key -> float64 array [rounds] of seconds; sample r of every key comes from
    round r, so ratios can be paired by round.
  """
  return time_rounds(calls, min_rounds=rounds, warmup=warmup, seed=seed,
                     on_round=(lambda r, _: on_round(r)) if on_round else None
                     ).samples
