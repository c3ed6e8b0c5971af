"""Measure one block's T(N) curve on a device and find its near-free boundary.

The data flow of a sweep: build the block once (weights, KV cache, inputs), AOT
compile each N, time all N interleaved (measure.py), then R(N) with CIs, NFP per
tau (boundary.py), the idle-compute baseline and the N=1 roofline efficiency
(principle.py) from the measured hardware balance.
"""

import dataclasses
import os
import time
from typing import Callable, Sequence

import jax
import numpy as np

from nfp_jax import blocks
from nfp_jax import boundary
from nfp_jax import conditions
from nfp_jax import costs
from nfp_jax import errors
from nfp_jax import measure
from nfp_jax import principle


@dataclasses.dataclass(frozen=True)
class SweepResult:
  points: list  # one dict per swept N ("kind": "point")
  summary: dict  # "kind": "summary"


def error_text(error: BaseException) -> str:
  """An error as one text, its root cause first: torch.compile wraps the error
  of the op it could not trace in a long explanation."""
  chain = [error]
  while chain[-1].__cause__ is not None and len(chain) < 8:
    chain.append(chain[-1].__cause__)
  text = ' <- '.join(f'{type(e).__name__}: {e}'.strip() for e in reversed(chain))
  return text if len(text) < 2000 else text[:2000] + ' ...'


def check_fits(cfg, available_bytes: int | None) -> None:
  """errors.ConfigError (one sentence) when the block's weights and caches
  alone exceed the memory available to measure it; temps and inputs come on
  top, so passing this check is necessary, not sufficient."""
  if available_bytes is None:
    return
  needed = blocks.state_bytes(cfg)
  if needed > available_bytes:
    raise errors.ConfigError(
        f'{cfg.module} {cfg.preset} x{cfg.scale:g} needs {needed / 2**30:.1f} GiB '
        f'for its weights and caches; this machine has {available_bytes / 2**30:.1f} '
        'GiB available (use --scale or smaller shapes).')


def each_position(positions: Sequence[int], prepare_one, progress) -> tuple:
  """({N: prepare_one(N)}, {N: error}) over every N.

  A failure at one N (out of memory, an op a compiler rejects) becomes a failed
  position with its error and the others go on; a failure at positions[0]
  raises, since every ratio is relative to T(1).
  """
  done, failed = {}, {}
  for n in positions:
    try:
      done[n] = prepare_one(n)
    except Exception as e:  # pylint: disable=broad-except
      if n == positions[0]:
        raise
      failed[n] = error_text(e)
      progress(f'N={n}: failed: {failed[n][:200]}')
  return done, failed


def run(cfg, positions: Sequence[int], *, rounds, balance, warmup: int = 2,
        taus: Sequence[float] = boundary.TAUS, compiler_options: dict | None = None,
        device=None, progress: Callable[[str], None] = lambda _: None
        ) -> SweepResult:
  """Measures T(N) for every N in `positions` (which starts at 1).

  A compile or run failure at one N (out of memory, say) becomes a failed point
  with its error; the others go on. A failure at N=1 raises, since every ratio
  is relative to T(1).
  """
  start = time.perf_counter()
  device = device or jax.devices()[0]
  config_id = cfg.config_id(positions)
  fn, state = blocks.forward(cfg)
  state = jax.device_put(state, device)
  def compile_one(n):
    args = jax.device_put((state,) + blocks.inputs(cfg, n, max(positions)), device)
    forward = measure.compile_forward(fn, args, compiler_options)
    jax.block_until_ready(forward.executable(*args))
    progress(f'N={n}: compiled in {forward.compile_s:.2f} s '
             f'(lower {forward.lower_s:.2f} s)')
    return forward, args

  compiled, failed = each_position(positions, compile_one, progress)
  setup_s = time.perf_counter() - start

  curve_fields = curve(
      cfg, {n: (lambda exe, a: lambda: jax.block_until_ready(exe(*a)))(
          fwd.executable, args) for n, (fwd, args) in compiled.items()},
      balance=balance, rounds=rounds, warmup=warmup, taus=taus,
      progress=progress, device=device)
  ok = curve_fields['positions']
  samples = dict(zip(ok, curve_fields.pop('samples_s')))
  points = []
  for n in positions:
    point = dict(kind='point', config_id=config_id, positions=n)
    if n in failed:
      points.append(dict(point, status='failed', error=failed[n]))
      continue
    fwd, _ = compiled[n]
    j = ok.index(n)
    points.append(dict(
        point, status='ok', samples_s=samples[n],
        t_median_s=curve_fields['t_median_s'][j],
        ratio=curve_fields['ratio'][j], ratio_ci=curve_fields['ratio_ci'][j],
        rounds_used=curve_fields['rounds_per_position'][j],
        verdict={k: v[j] for k, v in curve_fields['verdicts'].items()},
        lower_s=fwd.lower_s, compile_s=fwd.compile_s, cost_analysis=fwd.cost,
        memory_analysis=fwd.memory, flops_analytic=costs.total_flops(cfg, n),
        bytes_analytic=costs.total_bytes(cfg, n)))
  summary = dict(
      kind='summary', config_id=config_id, module=cfg.module, preset=cfg.preset,
      config=cfg.to_dict(), failed_positions=sorted(failed), **curve_fields,
      hardware=balance.to_dict(), setup_s=setup_s,
      wall_s=time.perf_counter() - start)
  return SweepResult(points, summary)


def curve(cfg, calls: dict, *, balance, rounds, warmup: int = 2,
          taus: Sequence[float] = boundary.TAUS,
          progress: Callable[[str], None] = lambda _: None,
          clock: Callable[[], float] = time.perf_counter,
          bandwidth_sentinel=None, device=None) -> dict:
  """Times one ready-made forward per N and reduces the samples to a curve.

  The framework-independent part of a sweep: interleaved randomized rounds
  (measure.time_interleaved, every sample kept), R(N) with paired-bootstrap
  CIs, NFP per tau (boundary.find), the idle-compute baseline and the N=1
  roofline efficiency. `run` makes the calls from JAX executables; the
  cross-framework comparison (nfp_jax.compare) makes them from PyTorch twins
  too, so every framework's curve comes from the same harness and statistics.

  Args:
    cfg: the BlockConfig the calls run (for N_idle and the roofline).
    calls: N -> a no-argument callable that runs one forward and returns once
      its output is ready; keys increasing, the first (N=1) is the base of
      every ratio.
    balance: the hardware balance (hardware.local_balance) of the device.
    rounds: a measure.RoundPlan (adaptive: extra rounds for the N that keep
      a tau unresolved) or an int (that many rounds, fixed); warmup as in
      measure.time_rounds; cfg.seed orders the rounds.
    taus: the tolerances of NFP and N_idle.
    progress: receives a line every fifth round.
    clock: the timer of the calls and of the time budget (a fake in tests).
    bandwidth_sentinel: (call, bytes) timed in every round beside the N
      (default conditions.bandwidth_sentinel(): a streaming read > LLC on
      `device`).

  Returns:
    The curve fields of a sweep summary, named as `run` names them:
    positions, samples_s (per N), t_median_s, ratio, ratio_ci, nfp,
    nfp_bracket, nfp_range, verdicts, nfp_interval, nfp_status,
    unresolved_reason, ambiguous_positions (maps tau_key -> value),
    rounds_per_position, round_plan, conditions, n_idle, n_idle_overprediction,
    t1_roofline_fraction, bytes_one, flops_one, rounds, warmup, timed_s.
  """
  positions = list(calls)
  plan = (rounds if isinstance(rounds, measure.RoundPlan)
          else measure.RoundPlan.fixed(rounds)).check()
  monitor = conditions.Monitor()
  sentinel, sentinel_bytes = (bandwidth_sentinel if bandwidth_sentinel is not None
                              else conditions.bandwidth_sentinel(device=device))
  timed = dict(calls, bandwidth=sentinel)

  def ambiguous(so_far):
    wanted = boundary.ambiguous_positions(positions, so_far, taus)
    return wanted + ['bandwidth'] if wanted else []

  def on_round(r):
    monitor.round_done()
    if (r + 1) % 5 == 0:
      progress(f'timed round {r + 1} (at most {plan.max_rounds})')

  samples = measure.time_rounds(timed, plan, ambiguous=ambiguous, warmup=warmup,
                                seed=cfg.seed, on_round=on_round, clock=clock)
  sentinel_s = samples.pop('bandwidth')
  bandwidth = conditions.bandwidth_summary(sentinel_bytes / sentinel_s / 1e9)
  stats = [measure.ratio_ci(samples[n], samples[positions[0]]) for n in positions]
  ratio, lo, hi = ([s[i] for s in stats] for i in range(3))
  bounds = {boundary.tau_key(t): boundary.find(positions, ratio, lo, hi, t)
            for t in taus}
  decided = boundary.from_rounds(positions, samples, taus, seed=cfg.seed,
                                 regime_split=bandwidth['regime_change_round'])
  t_median = [float(np.nanmedian(samples[n])) for n in positions]
  nfp = {k: b.nfp for k, b in bounds.items()}
  n_idle = principle.idle_compute(cfg, balance, taus)
  return dict(
      positions=positions,
      samples_s=[[None if np.isnan(t) else t for t in samples[n].tolist()]
                 for n in positions],
      t_median_s=t_median, ratio=ratio,
      ratio_ci=[[a, b] for a, b in zip(lo, hi)], nfp=nfp,
      nfp_bracket={k: list(b.bracket) for k, b in bounds.items()},
      nfp_range={k: [b.nfp_low, b.nfp_high] for k, b in bounds.items()},
      verdicts={k: list(b.verdicts) for k, b in bounds.items()},
      **{field: {k: d[field] for k, d in decided.items()}
         for field in ('nfp_interval', 'nfp_status', 'unresolved_reason',
                       'ambiguous_positions')},
      rounds_per_position=[int(np.isfinite(samples[n]).sum()) for n in positions],
      round_plan={k: (None if v == float('inf') else v)
                  for k, v in dataclasses.asdict(plan).items()},
      conditions=dict(monitor.summary(xla_threads=xla_threads()), **bandwidth,
                      sentinel_bytes=sentinel_bytes),
      n_idle=n_idle,
      n_idle_overprediction={k: n_idle[k] / nfp[k] for k in nfp},
      t1_roofline_fraction=principle.t1_roofline_fraction(cfg, balance,
                                                          t_median[0]),
      bytes_one=costs.total_bytes(cfg, 1), flops_one=costs.total_flops(cfg, 1),
      rounds=len(samples[positions[0]]), warmup=warmup,
      allocator=measure.pin_allocator(),
      timed_s=float(sum(np.nansum(s) for s in samples.values())
                    + np.nansum(sentinel_s)))


def xla_threads() -> int:
  """The threads XLA:CPU's intra-op pool uses: one per CPU this process may
  run on (XLA's default; XLA_FLAGS can lower it, recorded in provenance)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1
