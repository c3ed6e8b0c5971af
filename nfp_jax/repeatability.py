"""How repeatable a measured NFP is: the same sweep K times in a row, optionally
beside a bounded busy loop of this process's own on one core."""

import collections
import contextlib
import multiprocessing
import os
import statistics
import time
from typing import Callable, Sequence

from nfp_jax import boundary
from nfp_jax import sweep


def _busy(deadline: float) -> None:
  """A busy loop on the last CPU this process may use, until `deadline`."""
  try:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
  except (AttributeError, OSError):
    pass
  x = 0
  while time.time() < deadline:
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF


@contextlib.contextmanager
def busy_core(enabled: bool, max_seconds: float = 3600.0):
  """A busy child process on one core while the block runs (stopped at exit,
  and in any case after max_seconds)."""
  if not enabled:
    yield None
    return
  process = multiprocessing.get_context('spawn').Process(
      target=_busy, args=(time.time() + max_seconds,), daemon=True)
  process.start()
  try:
    yield process
  finally:
    process.terminate()
    process.join(5)


def half_widths(summary: dict, relative: bool = False) -> list:
  """(high - low) / 2 of R's CI at every N > 1; divided by R when `relative`
  (where R(N) is far above 1, as on CPUs whose N=2 kernel is a slower GEMM,
  the absolute half-width grows with R)."""
  return [(hi - lo) / 2 / (r if relative else 1)
          for r, (lo, hi) in zip(summary['ratio'][1:], summary['ratio_ci'][1:])]


def run_sweeps(cfg, positions: Sequence[int], runs: int, *, balance, plan,
               device=None, competing_load: bool = False, tau: float = 0.1,
               measure: Callable | None = None,
               progress: Callable[[str], None] = lambda _: None) -> dict:
  """The sweep of `cfg` `runs` times; per run NFP(tau), its status and
  interval, the sentinel bandwidth and the wall time, then the mode and how
  often a decided run reached it. `measure` (tests) replaces the sweep."""
  key = boundary.tau_key(tau)
  measure = measure or (lambda: sweep.measure_block(
      cfg, positions, plan=plan, balance=balance, device=device).summary)
  rows = []
  with busy_core(competing_load):
    for i in range(runs):
      start = time.perf_counter()
      s = measure()
      cond = s.get('conditions') or {}
      rows.append(dict(
          run=i + 1, nfp=s['nfp'][key], status=s.get('nfp_status', {}).get(key),
          interval=s.get('nfp_interval', {}).get(key),
          reason=s.get('unresolved_reason', {}).get(key),
          median_half_width=statistics.median(half_widths(s)),
          median_rel_half_width=statistics.median(half_widths(s, True)),
          bandwidth_gbs=cond.get('bandwidth_gbs'),
          bandwidth_ci_gbs=cond.get('bandwidth_ci_gbs'),
          share_interfered=cond.get('share_interfered'), rounds=s.get('rounds'),
          wall_s=time.perf_counter() - start))
      progress(f"run {i + 1}/{runs}: NFP({key}) = {rows[-1]['nfp']} "
               f"({rows[-1]['status']}), {rows[-1]['wall_s']:.1f} s")
  decided = [r['nfp'] for r in rows if r['status'] == 'decided']
  mode, count = (collections.Counter(decided).most_common(1)[0] if decided
                 else (None, 0))
  return dict(module=cfg.module, preset=cfg.preset, scale=cfg.scale,
              tau=key, competing_load=competing_load, runs=rows,
              mode=mode, mode_count=count, decided=len(decided),
              decided_off_mode=sum(n != mode for n in decided),
              median_half_width=statistics.median(r['median_half_width']
                                                  for r in rows),
              median_rel_half_width=statistics.median(
                  r['median_rel_half_width'] for r in rows),
              wall_s=[r['wall_s'] for r in rows])


def text(report: dict) -> str:
  """The benchmark's printed report."""
  tau = report['tau']
  lines = [f"{report['module']} {report['preset']} x{report['scale']:g}, "
           f"{len(report['runs'])} runs"
           + (' beside a busy loop on one core' if report['competing_load'] else '')]
  for r in report['runs']:
    bw = (f"{r['bandwidth_gbs']:.1f} GB/s [{r['bandwidth_ci_gbs'][0]:.1f}, "
          f"{r['bandwidth_ci_gbs'][1]:.1f}]" if r['bandwidth_gbs'] else '-')
    lines.append(f"  run {r['run']:>2}: NFP({tau}) = {r['nfp']:>3} {r['status']:<10} "
                 f"interval {r['interval']}  median CI half-width "
                 f"{r['median_half_width']:.3f} ({r['median_rel_half_width']:.1%} of R)  "
                 f"bandwidth {bw}  "
                 f"{r['share_interfered']:.0%} rounds interfered  {r['rounds']} rounds  "
                 f"{r['wall_s']:.1f} s")
  lines.append(
      f"mode NFP({tau}) = {report['mode']}: reached by {report['mode_count']} of "
      f"{len(report['runs'])} runs ({report['decided']} decided; "
      f"{report['decided_off_mode']} decided off the mode); median CI half-width "
      f"of R {report['median_half_width']:.3f} ({report['median_rel_half_width']:.1%} "
      f"of R); wall per run "
      f"{statistics.median(report['wall_s']):.1f} s (median), "
      f"{max(report['wall_s']):.1f} s (max)")
  return '\n'.join(lines)
