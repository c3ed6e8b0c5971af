"""Measure one block's T(N) curve on a device and find its near-free boundary.

The data flow of a sweep: build the block once (weights, KV cache, inputs), AOT
compile each N, time all N interleaved (measure.py), then R(N) with CIs, NFP per
tau (boundary.py), the idle-compute baseline and the N=1 roofline efficiency
(principle.py) from the measured hardware balance.
"""

import dataclasses
import math
import time
from typing import Callable, Sequence

import jax
import numpy as np

from nfp_jax import blocks
from nfp_jax import boundary
from nfp_jax import conditions
from nfp_jax import costs
from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import measure
from nfp_jax import principle


@dataclasses.dataclass(frozen=True)
class SweepResult:
  points: list  # one dict per swept N ("kind": "point")
  summary: dict  # "kind": "summary"
  # N -> hlo.CompiledHlo of the executable that was timed (its kernels), for
  # the prediction: a sweep compiles each N once.
  compiled: dict = dataclasses.field(default_factory=dict)


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


def point_records(head: dict, positions: Sequence[int], fields: dict,
                  failed: dict, per_n: dict) -> list:
  """The `point` records of one curve (sweep and compare alike): per swept N
  its samples (None for rounds that did not time it), median, R with CI and
  verdict per tau, plus `per_n[N]` (compile times, kernels, ...); a failed N
  gets its error."""
  ok = fields['positions']
  points = []
  for n in positions:
    point = dict(kind='point', **head, positions=n)
    if n in failed:
      points.append(dict(point, status='failed', error=failed[n]))
      continue
    j = ok.index(n)
    points.append(dict(
        point, status='ok',
        samples_s=[None if not math.isfinite(t) else t for t in fields['samples_s'][j]],
        t_median_s=fields['t_median_s'][j], ratio=fields['ratio'][j],
        ratio_ci=fields['ratio_ci'][j],
        verdict={k: v[j] for k, v in fields['verdicts'].items()}, **per_n[n]))
  return points


def measure_block(cfg, positions: Sequence[int], *, balance,
                  plan: measure.RoundPlan = measure.RoundPlan(), warmup: int = 2,
                  taus: Sequence[float] = boundary.TAUS,
                  compiler_options: dict | None = None, device=None,
                  progress: Callable[[str], None] = lambda _: None) -> SweepResult:
  """Builds the block, compiles each N once and times T(N) for every N in
  `positions` (which starts at 1) with time_curve.

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
    forward = measure.compile_forward(fn, args, compiler_options, read=True,
                                      positions=n)
    jax.block_until_ready(forward.executable(*args))
    progress(f'N={n}: compiled in {forward.compile_s:.2f} s '
             f'(lower {forward.lower_s:.2f} s)')
    return forward, args

  compiled, failed = each_position(positions, compile_one, progress)
  setup_s = time.perf_counter() - start
  fields = time_curve(
      cfg, {n: (lambda exe, a: lambda: jax.block_until_ready(exe(*a)))(
          fwd.executable, args) for n, (fwd, args) in compiled.items()},
      balance=balance, plan=plan, warmup=warmup, taus=taus, device=device,
      progress=progress)
  points = point_records(
      dict(config_id=config_id), positions, fields, failed,
      {n: dict(lower_s=fwd.lower_s, compile_s=fwd.compile_s,
               cost_analysis=fwd.cost, memory_analysis=fwd.memory,
               flops_analytic=costs.total_flops(cfg, n),
               bytes_analytic=costs.total_bytes(cfg, n))
       for n, (fwd, _) in compiled.items()})
  fields.pop('samples_s')
  summary = dict(
      kind='summary', config_id=config_id, module=cfg.module, preset=cfg.preset,
      config=cfg.to_dict(), failed_positions=sorted(failed), **fields,
      hardware=balance.to_dict(), setup_s=setup_s,
      wall_s=time.perf_counter() - start)
  return SweepResult(points, summary,
                     {n: fwd.hlo for n, (fwd, _) in compiled.items()})


def _decisions(positions, samples, taus, regime, n_boot=1000) -> dict:
  """tau_key -> boundary.Decision; with a bandwidth regime change, decided
  only if each regime's rounds decide the same NFP."""
  out = {}
  for tau in taus:
    d = boundary.decide(positions, samples, tau, n_boot=n_boot)
    if regime and d.status == 'decided':
      split = regime['round']
      parts = [boundary.decide(positions, {n: v[a:b] for n, v in samples.items()},
                               tau, n_boot=200)
               for a, b in ((0, split), (split, None))]
      if not all(p.status == 'decided' and p.nfp == d.nfp for p in parts):
        d = dataclasses.replace(
            d, status='unresolved', ambiguous=tuple(positions[1:]),
            reason=(f"the memory bandwidth changed regime at round {split} "
                    f"({regime['before_gbs']:.1f} -> {regime['after_gbs']:.1f} GB/s, "
                    f"Pettitt p={regime['p']:.2g}) and the boundary does not hold "
                    f"in both: NFP {parts[0].nfp} ({parts[0].status}) before, "
                    f"{parts[1].nfp} ({parts[1].status}) after"))
    out[boundary.tau_key(tau)] = d
  return out


def time_curve(cfg, calls: dict, *, balance,
               plan: measure.RoundPlan = measure.RoundPlan(), warmup: int = 2,
               taus: Sequence[float] = boundary.TAUS, device=None,
               sentinel: bool = True,
               progress: Callable[[str], None] = lambda _: None) -> dict:
  """Times one ready-made forward per N and reduces the samples to a curve.

  The framework-independent part of a sweep (compare uses it for PyTorch
  too): interleaved randomized rounds (measure.time_rounds) with a bandwidth
  sentinel in each, more rounds on the N whose boundary is still undecided
  (`plan`); R(N) as the median of paired per-round ratios with its
  order-statistic CI; per tau the NFP, its bootstrap interval and whether it is
  decided (boundary.decide); the conditions of the run (conditions.py); the
  idle-compute baseline and the N=1 roofline efficiency.

  Returns the curve fields of a sweep summary: positions, samples_s (per N),
  t_median_s, ratio, ratio_ci, nfp, nfp_interval, nfp_status,
  unresolved_reason, nfp_bracket, nfp_range, verdicts, rounds_per_n, rounds,
  stopped, conditions, n_idle, n_idle_overprediction, t1_roofline_fraction,
  bytes_one, flops_one, warmup, allocator, timed_s.
  """
  plan = plan.checked()
  positions = list(calls)
  cpu = hardware.cpu_description()
  before = conditions.snapshot()
  probe_call, probe_bytes = (hardware.bandwidth_sentinel(device) if sentinel
                             else (None, 0))

  def undecided(samples):
    return set().union(*(d.ambiguous for d in _decisions(
        positions, samples, taus, None, n_boot=0).values()))

  def on_round(r, active):
    if r + 1 == plan.min_rounds or (r + 1) % 25 == 0:
      progress(f'timed round {r + 1} ({active} N this round)')

  timed = measure.time_rounds(
      calls, min_rounds=plan.min_rounds, max_rounds=plan.max_rounds,
      time_budget_s=plan.time_budget_s, warmup=warmup, seed=cfg.seed,
      undecided=undecided if plan.max_rounds > plan.min_rounds else None,
      sentinel=probe_call, on_round=on_round)
  samples = timed.samples
  bandwidth = probe_bytes / timed.sentinel_s if probe_call else None
  cond = conditions.summarize(timed.conditions, before, conditions.snapshot(),
                              cpu, bandwidth)
  decisions = _decisions(positions, samples, taus, cond.get('regime_change'))
  stats = [boundary.ratio_ci(samples[n], samples[positions[0]]) for n in positions]
  ratio, lo, hi = ([s[i] for s in stats] for i in range(3))
  bounds = {boundary.tau_key(t): boundary.find(positions, ratio, lo, hi, t)
            for t in taus}
  t_median = [float(np.nanmedian(samples[n])) for n in positions]
  nfp = {k: d.nfp for k, d in decisions.items()}
  n_idle = principle.idle_compute(cfg, balance, taus)
  return dict(
      positions=positions, samples_s=[samples[n].tolist() for n in positions],
      t_median_s=t_median, ratio=ratio,
      ratio_ci=[[a, b] for a, b in zip(lo, hi)], nfp=nfp,
      nfp_interval={k: list(d.interval) for k, d in decisions.items()},
      nfp_status={k: d.status for k, d in decisions.items()},
      unresolved_reason={k: d.reason for k, d in decisions.items()},
      nfp_bracket={k: [nfp[k], _next(positions, nfp[k])] for k in nfp},
      nfp_range={k: [b.nfp_low, b.nfp_high] for k, b in bounds.items()},
      verdicts={k: list(b.verdicts) for k, b in bounds.items()},
      rounds_per_n={str(n): c for n, c in timed.rounds_per_key().items()},
      rounds=len(timed.conditions), stopped=timed.stopped,
      round_plan=dataclasses.asdict(plan), conditions=cond,
      round_conditions=timed.conditions,
      sentinel_gbs=(bandwidth / 1e9).tolist() if bandwidth is not None else None,
      n_idle=n_idle,
      n_idle_overprediction={k: n_idle[k] / nfp[k] for k in nfp},
      t1_roofline_fraction=principle.t1_roofline_fraction(cfg, balance,
                                                          t_median[0]),
      bytes_one=costs.total_bytes(cfg, 1), flops_one=costs.total_flops(cfg, 1),
      warmup=warmup, allocator=measure.pin_allocator(), timed_s=timed.timed_s)


def _next(positions, n):
  i = positions.index(n)
  return positions[i + 1] if i + 1 < len(positions) else None
