"""What the machine was doing while a curve was timed: per-round interference,
the memory bandwidth a round saw, and whether it changed regime mid-run.

A round is marked as interfered when, over that round, the CPU's steal time was
more than 2% of its ticks, iowait more than 5%, other processes kept more than
0.3 of a core busy (the machine's busy ticks less this process's CPU time: a
competing busy loop shows as 1 core), or this process got less than 80% of one
core's time while it waited for its own calls. The 1-minute load average is
recorded but is no criterion: it lags.
"""

import math
import os
import time

import numpy as np

from nfp_jax import boundary

STEAL_LIMIT = 0.02
IOWAIT_LIMIT = 0.05
CPU_PER_WALL_LIMIT = 0.8
OTHERS_LIMIT = 0.3  # cores kept busy by other processes
# A regime change: Pettitt's test at p < 0.01 and medians apart by more than 5%.
REGIME_P = 0.01
REGIME_SHIFT = 0.05


def _proc_stat() -> tuple | None:
  """(total, steal, iowait, busy) CPU ticks of /proc/stat (busy: neither idle
  nor iowait), or None off Linux."""
  try:
    with open('/proc/stat') as f:
      fields = f.readline().split()
  except OSError:
    return None
  ticks = [int(v) for v in fields[1:]]
  steal = ticks[7] if len(ticks) > 7 else 0
  iowait = ticks[4] if len(ticks) > 4 else 0
  return sum(ticks), steal, iowait, sum(ticks) - ticks[3] - iowait


def snapshot() -> dict:
  """The counters a round is judged by, read now."""
  return dict(wall=time.perf_counter(), cpu=time.process_time(),
              stat=_proc_stat(), load1=_load1())


def _load1() -> float | None:
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def round_record(before: dict, after: dict) -> dict:
  """One round's conditions from the snapshots around it, marked or not."""
  wall = max(after['wall'] - before['wall'], 1e-12)
  record = dict(load1=after['load1'],
                cpu_per_wall=(after['cpu'] - before['cpu']) / wall)
  if before['stat'] and after['stat']:
    total = max(after['stat'][0] - before['stat'][0], 1)
    record['steal_share'] = (after['stat'][1] - before['stat'][1]) / total
    record['iowait_share'] = (after['stat'][2] - before['stat'][2]) / total
    if len(after['stat']) > 3:
      busy_s = (after['stat'][3] - before['stat'][3]) / os.sysconf('SC_CLK_TCK')
      record['others_cores'] = max(0.0, busy_s - (after['cpu'] - before['cpu'])) / wall
  record['interfered'] = bool(
      record.get('steal_share', 0) > STEAL_LIMIT
      or record.get('iowait_share', 0) > IOWAIT_LIMIT
      or record.get('others_cores', 0) > OTHERS_LIMIT
      or record['cpu_per_wall'] < CPU_PER_WALL_LIMIT)
  return record


def xla_threads() -> dict:
  """The CPUs XLA:CPU's thread pool may use (this process's affinity) and the
  XLA flags that could change it."""
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return dict(usable_cpus=usable, xla_flags=os.environ.get('XLA_FLAGS', ''))


def pettitt(series) -> tuple[int, float]:
  """Pettitt's change-point test: (split index, approximate p-value).

  The split index t means rounds [0, t) and [t, n) differ most;
  p ~ 2 exp(-6 K^2 / (n^3 + n^2)) (Pettitt 1979).
  """
  x = np.asarray(series, float)
  x = x[np.isfinite(x)]
  n = len(x)
  if n < 4:
    return n, 1.0
  signs = np.sign(x[:, None] - x[None, :])  # signs[i, j] = sign(x_i - x_j)
  # U_t = sum_{i < t} sum_{j >= t} sign(x_i - x_j), t = 1 .. n-1.
  cum = np.cumsum(signs, axis=0)  # rows summed up to i
  u = np.array([cum[t - 1, t:].sum() for t in range(1, n)])
  t = int(np.argmax(np.abs(u))) + 1
  k = float(np.abs(u).max())
  return t, float(min(1.0, 2 * math.exp(-6 * k**2 / (n**3 + n**2))))


def regime_change(bandwidth) -> dict | None:
  """Where the sentinel's bandwidth series changed regime beyond its noise
  (Pettitt p < REGIME_P and segment medians apart by more than REGIME_SHIFT),
  else None."""
  x = np.asarray(bandwidth, float)
  x = x[np.isfinite(x)]
  split, p = pettitt(x)
  if p >= REGIME_P or split < 3 or len(x) - split < 3:
    return None
  before, after = float(np.median(x[:split])), float(np.median(x[split:]))
  if abs(after - before) / max(before, 1e-30) <= REGIME_SHIFT:
    return None
  return dict(round=split, p=p, before_gbs=before / 1e9, after_gbs=after / 1e9)


def summarize(rounds: list, before: dict, after: dict, cpu: dict,
              bandwidth=None, level: float = 0.95) -> dict:
  """The `conditions` of a summary: CPU, load, marked rounds, XLA threads and
  the sentinel's bandwidth (median, CI, regime change)."""
  out = dict(cpu_model=cpu.get('model'), isa_flags=cpu.get('isa_flags'),
             cores=cpu.get('cpu_count'), load_before=before.get('load1'),
             load_after=after.get('load1'), rounds=len(rounds),
             share_interfered=(sum(r['interfered'] for r in rounds) / len(rounds)
                               if rounds else None),
             xla=xla_threads())
  if bandwidth is not None and len(bandwidth):
    med, lo, hi = boundary.median_ci(bandwidth, level)
    out.update(bandwidth_gbs=med / 1e9, bandwidth_ci_gbs=[lo / 1e9, hi / 1e9],
               regime_change=regime_change(bandwidth))
  return out
