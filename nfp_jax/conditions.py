"""The conditions a sweep ran under: which CPU, what load, which rounds were
interfered with.

Per round: the 1-minute load average, the steal and iowait deltas of
/proc/stat (where the OS has them) and the process CPU time against wall time.
A round is marked interfered when steal or iowait took more than 5% of the
machine's time during it, or the load average exceeded the core count.
"""

import os
import platform
import time

ISA_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_bf16',
             'amx_int8', 'amx_tile', 'neon', 'asimd', 'sve')
INTERFERED_SHARE = 0.05


def _cpu_times():
  try:
    with open('/proc/stat') as f:
      fields = f.readline().split()[1:]
  except OSError:
    return None
  values = [int(v) for v in fields]
  return dict(total=sum(values), iowait=values[4] if len(values) > 4 else 0,
              steal=values[7] if len(values) > 7 else 0)


def load() -> float | None:
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def cpu() -> dict:
  """CPU model, the vector-ISA flags that matter, core count."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name':
          model = value.strip()
        elif key in ('flags', 'Features'):
          flags |= set(value.split())
  except OSError:
    pass
  return dict(cpu_model=model, isa_flags=[f for f in ISA_FLAGS if f in flags],
              cores=os.cpu_count())


class Monitor:
  """Call .round_done() after every timed round; .summary() at the end."""

  def __init__(self):
    self.cores = os.cpu_count() or 1
    self.load_before = load()
    self.rounds = []
    self._mark()

  def _mark(self):
    self._stat, self._wall, self._cpu = _cpu_times(), time.perf_counter(), time.process_time()

  def round_done(self, _=None) -> None:
    stat, wall, cpu_s = _cpu_times(), time.perf_counter(), time.process_time()
    record = dict(load=load(), wall_s=wall - self._wall, cpu_s=cpu_s - self._cpu)
    interfered = record['load'] is not None and record['load'] > self.cores
    if stat and self._stat and stat['total'] > self._stat['total']:
      total = stat['total'] - self._stat['total']
      record['steal'] = (stat['steal'] - self._stat['steal']) / total
      record['iowait'] = (stat['iowait'] - self._stat['iowait']) / total
      interfered |= record['steal'] + record['iowait'] > INTERFERED_SHARE
    record['interfered'] = bool(interfered)
    self.rounds.append(record)
    self._mark()

  def summary(self, xla_threads: int | None = None) -> dict:
    marked = sum(r['interfered'] for r in self.rounds)
    return dict(cpu(), load_before=self.load_before, load_after=load(),
                interfered_share=marked / len(self.rounds) if self.rounds else 0.0,
                interference_rule=f'load > cores or steal+iowait > '
                f'{INTERFERED_SHARE:.0%} of machine time in the round',
                xla_threads=xla_threads, rounds=self.rounds)


def llc_bytes() -> int | None:
  """The largest cache's size from sysfs (None where there is none)."""
  sizes = []
  base = '/sys/devices/system/cpu/cpu0/cache'
  try:
    for entry in os.listdir(base):
      with open(f'{base}/{entry}/size') as f:
        text = f.read().strip()
      unit = {'K': 2**10, 'M': 2**20, 'G': 2**30}.get(text[-1:], 1)
      sizes.append(int(text.rstrip('KMG')) * unit)
  except (OSError, ValueError):
    return None
  return max(sizes) if sizes else None


def sentinel_bytes() -> int:
  """A streaming-read buffer 4x the last-level cache, within [64, 256] MiB."""
  llc = llc_bytes() or 32 * 2**20
  return int(min(max(4 * llc, 64 * 2**20), 256 * 2**20))


def bandwidth_sentinel(nbytes: int | None = None, device=None):
  """(call, bytes): a no-argument call that streams once through a fixed
  float32 buffer larger than the LLC, the way hardware.measure_local measures
  the balance's bandwidth (XLA row sums of a [rows, 8192] array, which read
  every byte once), so the two bandwidths compare."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rows = (nbytes or sentinel_bytes()) // (4 * 8192)
  buffer = jnp.ones((rows, 8192), jnp.float32)
  if device is not None:
    buffer = jax.device_put(buffer, device)
  row_sum = jax.jit(lambda x: jnp.sum(x, axis=1)).lower(buffer).compile()
  jax.block_until_ready(row_sum(buffer))
  return (lambda: jax.block_until_ready(row_sum(buffer))), rows * 8192 * 4


def pettitt(series) -> tuple[int, float]:
  """Pettitt's change-point test: (index of the first element after the most
  likely change, approximate two-sided p-value 2 exp(-6K^2 / (n^3 + n^2)))."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  x = np.asarray(series, float)
  n = len(x)
  if n < 4:
    return n, 1.0
  sign = np.sign(x[None, :] - x[:, None])  # [i, j] = sign(x_j - x_i)
  u = np.array([sign[:t + 1, t + 1:].sum() for t in range(n - 1)])
  t = int(np.argmax(np.abs(u)))
  k = float(abs(u[t]))
  return t + 1, float(min(1.0, 2 * np.exp(-6 * k**2 / (n**3 + n**2))))


REGIME_P = 0.01  # Pettitt significance of a bandwidth regime change
REGIME_SHIFT = 0.05  # ... and the medians before/after differ by more than 5%


def bandwidth_summary(gbs) -> dict:
  """bandwidth_gbs (median), bandwidth_ci_gbs (order-statistic 95% CI of the
  median) and regime_change_round (None unless Pettitt p < REGIME_P and the
  medians before and after differ by more than REGIME_SHIFT)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from nfp_jax import measure  # pylint: disable=import-outside-toplevel
  x = np.asarray(gbs, float)
  x = x[np.isfinite(x)]
  s = np.sort(x)
  lo, hi = measure.median_ci_ranks(len(s))
  split, p = pettitt(x)
  change = None
  if p < REGIME_P and 0 < split < len(x):
    a, b = np.median(x[:split]), np.median(x[split:])
    if abs(b - a) > REGIME_SHIFT * min(a, b):
      change = split
  return dict(bandwidth_gbs=float(np.median(x)),
              bandwidth_ci_gbs=[float(s[lo]), float(s[hi])],
              bandwidth_per_round_gbs=x.tolist(), regime_change_round=change,
              regime_test=f'Pettitt p < {REGIME_P} and median shift > '
              f'{REGIME_SHIFT:.0%}', regime_p=p)
