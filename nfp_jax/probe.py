"""The granularity probe: fine-N sweeps of plain GEMMs on fixed reference shapes.

On XLA:CPU the tiles live inside YNNPACK/Eigen and the HLO only tells which
kernel runs (a GEMV emitted as LLVM IR at N=1, a YNNPACK fusion for N>=2, a
plain dot when YNNPACK is off). What those kernels cost as N grows comes from
this probe: `[N, K] x [K, F]` for every N from 1 to 64 and more coarsely to
256, on a fixed set of reference shapes (a log-spaced grid of K and F plus the
thin attention shapes, REFERENCE_SHAPES) that are never the shapes of a
block being predicted (a prediction must not be a re-measurement of its own
answer). Per N it records the kernel kind (read from the compiled HLO) and
T(N) (interleaved rounds, medians, bootstrap CIs), and derives:
  kernel switches   the kind changes between consecutive N;
  steps             a jump in T(N) beyond the local trend and the noise;
  tile period       a period p with steps at N = k*p + 1, if the steps have one;
  per kind          the streaming bandwidth at its smallest N (weights plus
                    activations over T) and the FLOP rate at its largest N.
Results are cached per machine (the cache path is the caller's), with their
own provenance, for the predictor to price each CPU kernel of a block.
"""

import dataclasses
import datetime
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from nfp_jax import boundary
from nfp_jax import costs
from nfp_jax import hardware
from nfp_jax import measure
from nfp_jax import results

# The reference shapes (contraction K, features F) follow a rule fixed in
# advance, never chosen to match a block that is validated:
#   - every K x F of a log-spaced grid, K and F in {256, 1024, 4096} (a factor 4
#     apart, float32 weights from 256 KiB, in the caches, to 64 MiB, streaming
#     from memory; square, wide and tall), and
#   - the two thin shapes of attention over a KV cache (scores: K = head_dim
#     128, F = cache length 32768; values: K = 32768, F = 128; 16 MiB each).
# The two smallest sizes also give each kind's fixed, size-independent part
# (principle.fixed_part).
GRID_SIDES = (256, 1024, 4096)
THIN_SHAPES = ((128, 32768), (32768, 128))
REFERENCE_SHAPES = tuple((k, f) for k in GRID_SIDES for f in GRID_SIDES) + THIN_SHAPES
FINE_POSITIONS = tuple(range(1, 65))
COARSE_POSITIONS = (80, 96, 128, 192, 256)
DEFAULT_POSITIONS = FINE_POSITIONS + COARSE_POSITIONS
PROBE_VERSION = 4
# Rounds per reference curve: 9 is the fewest whose 95% order-statistic CI of
# a median drops the slowest and fastest round ([x(2), x(8)], coverage 96%);
# with 7 the CI is the whole range, which on this 2-core host exceeded 25% of
# the median on every curve even when quiet (2026-12-06), so every curve was
# measured twice.
PROBE_ROUNDS = 9


@dataclasses.dataclass(frozen=True)
class ReferenceCurve:
  """One reference GEMM [N, contraction] x [contraction, features] swept over N."""
  dtype: str
  contraction: int
  features: int
  positions: tuple
  t_median_s: tuple
  t_ci_s: tuple  # (low, high) bootstrap 95% CI of each median
  kinds: tuple  # kernel kind per N, from the compiled HLO
  llvm_functions: tuple  # XLA:CPU GEMV function per N (None if not a GEMV)


def _kind(kernels: list) -> tuple:
  """(kind, GEMV function) of the GEMM kernel of a compiled probe."""
  for kernel in kernels:
    if kernel.kind != 'other':
      return kernel.kind, kernel.llvm_function
  return 'other', None


def sweep_reference(dtype: str, contraction: int, features: int,
                    positions=DEFAULT_POSITIONS, rounds: int = PROBE_ROUNDS, warmup: int = 2,
                    seed: int = 0, device=None) -> ReferenceCurve:
  """Compiles and times the reference GEMM at every N, interleaved by round."""
  device = device or jax.devices()[0]
  rng = np.random.default_rng(seed)
  weights = jax.device_put(jnp.asarray(
      rng.standard_normal((contraction, features)), dtype), device)
  calls, kinds, functions = {}, [], []
  for n in positions:
    x = jax.device_put(jnp.asarray(rng.standard_normal((n, contraction)), dtype),
                       device)
    forward = measure.compile_forward(lambda a, w: a @ w, (x, weights),
                                      read=True, positions=n)
    kind, function = _kind(forward.hlo.kernels())
    kinds.append(kind)
    functions.append(function)
    calls[n] = (lambda e, a: lambda: jax.block_until_ready(e(a, weights)))(
        forward.executable, x)
  samples = measure.time_interleaved(calls, rounds, warmup=warmup, seed=seed)
  medians, intervals = [], []
  for n in positions:
    # The CI of a median: its order-statistic interval.
    median, low, high = boundary.median_ci(samples[n])
    medians.append(median)
    intervals.append((low, high))
  return ReferenceCurve(dtype, contraction, features, tuple(positions),
                        tuple(medians), tuple(intervals), tuple(kinds),
                        tuple(functions))


def kernel_switches(positions, kinds) -> list:
  """Where the kernel kind changes between consecutive N."""
  return [dict(from_positions=int(a), to_positions=int(b), from_kind=ka,
               to_kind=kb)
          for a, b, ka, kb in zip(positions, positions[1:], kinds, kinds[1:])
          if ka != kb]


def latency_steps(positions, t_median, t_ci, min_jump: float = 0.05,
                  trend_factor: float = 3.0) -> list:
  """Jumps in T(N) between consecutive N beyond the local trend and the noise.

  A step at b (after a) needs: the CIs separated (low(b) > high(a)), a rise of
  more than `min_jump` of T(a), and a rise of more than `trend_factor` times
  what the median per-position slope of the curve predicts over b - a (so a
  compute-bound curve that grows steadily has no steps).
  """
  positions = np.asarray(positions, float)
  t = np.asarray(t_median, float)
  ci = np.asarray(t_ci, float)
  if len(t) < 3:
    return []
  gaps = np.diff(positions)
  slopes = np.diff(t) / gaps
  slope = max(float(np.median(slopes)), 0.0)
  steps = []
  for i in range(1, len(t)):
    rise = t[i] - t[i - 1]
    expected = slope * gaps[i - 1]
    if (ci[i, 0] > ci[i - 1, 1] and rise > min_jump * t[i - 1]
        and rise > trend_factor * expected):
      steps.append(dict(from_positions=int(positions[i - 1]),
                        to_positions=int(positions[i]),
                        jump_s=float(rise - expected),
                        jump_ratio=float(t[i] / t[i - 1])))
  return steps


def tile_period(steps, fine_limit: int = 64, min_steps: int = 2,
                min_coverage: float = 0.5) -> int | None:
  """A period p of the steps: steps from k*p to k*p + 1 at most multiples of p.

  Only steps between consecutive N (the fine grid, up to `fine_limit`) are
  used. p is the gcd of their boundaries; it counts only if at least
  `min_coverage` of its multiples below `fine_limit` show a step (a few noisy
  jumps that happen to share a divisor are no tile). None otherwise.
  """
  boundaries = [s['from_positions'] for s in steps
                if s['to_positions'] == s['from_positions'] + 1
                and s['to_positions'] <= fine_limit and s['from_positions'] > 1]
  if len(boundaries) < min_steps:
    return None
  period = 0
  for edge in boundaries:
    period = math.gcd(period, edge)
  if period < 2:
    return None
  multiples = range(period, fine_limit, period)
  return period if len(boundaries) >= min_coverage * len(multiples) else None


def kind_rates(curve: ReferenceCurve, small: int = 4, large: int = 3) -> dict:
  """Per kind: streaming bandwidth at its smallest N, FLOP rate at its largest.

  Bandwidth counts the bytes a GEMM must move (weights once, activations in
  and out) over the median time, as a median of the kind's `small` smallest N;
  the FLOP rate is 2*N*K*F over the time, the best of its `large` largest N.
  """
  item = costs.itemsize(curve.dtype)
  rates = {}
  for kind in dict.fromkeys(curve.kinds):
    points = [(n, t) for n, t, k in zip(curve.positions, curve.t_median_s,
                                        curve.kinds) if k == kind]
    bandwidth = [(curve.contraction * curve.features + n * (curve.contraction +
                                                             curve.features))
                 * item / t for n, t in points[:small]]
    flops = [2.0 * n * curve.contraction * curve.features / t
             for n, t in points[-large:]]
    rates[kind] = dict(
        positions=[int(points[0][0]), int(points[-1][0])],
        bandwidth_bytes_per_s=float(np.median(bandwidth)),
        bandwidth_at_positions=[int(n) for n, _ in points[:small]],
        flop_rate=float(max(flops)),
        flop_rate_at_positions=[int(n) for n, _ in points[-large:]])
  return rates


def derive(curve: ReferenceCurve) -> dict:
  """Switches, steps, period and per-kind rates of one reference curve."""
  steps = latency_steps(curve.positions, curve.t_median_s, curve.t_ci_s)
  return dict(dataclasses.asdict(curve),
              kernel_switches=kernel_switches(curve.positions, curve.kinds),
              steps=steps, tile_period=tile_period(steps),
              kinds_summary=kind_rates(curve))


def summarize(references: list) -> dict:
  """kind -> dtype -> figures across reference shapes, for the predictor.

  bandwidth: from the streaming (largest) shape, since a block's weights are
  read from memory; FLOP rate: the best over shapes; steps and periods listed.
  """
  out = {}
  for ref in sorted(references, key=lambda r: r['contraction'] * r['features']):
    for kind, rates in ref['kinds_summary'].items():
      entry = out.setdefault(kind, {}).setdefault(ref['dtype'], {})
      entry['bandwidth_bytes_per_s'] = rates['bandwidth_bytes_per_s']
      entry['bandwidth_shape'] = [ref['contraction'], ref['features']]
      entry['flop_rate'] = max(entry.get('flop_rate', 0.0), rates['flop_rate'])
      entry.setdefault('tile_periods', []).append(ref['tile_period'])
      entry.setdefault('steps_at', []).extend(
          s['to_positions'] for s in ref['steps']
          if rates['positions'][0] <= s['to_positions'] <= rates['positions'][1])
  return out


def quality(curve: ReferenceCurve, max_rel_ci: float = 0.25,
            max_wide_share: float = 0.1, max_dip: float = 0.15) -> str | None:
  """Why a reference curve should not be cached as it is, or None: more than
  max_wide_share of its medians have a CI wider than max_rel_ci of the median
  (one noisy point among 69 does not spoil a curve that is fitted as a whole),
  or a larger N whose whole CI lies more than max_dip below a smaller N's CI
  while the same kernel kind runs both (a curve that falls with N: a point
  caught interference). The three limits are stated in advance, not fitted:
  a CI over a quarter of its median, more than 7 of the 69 default N, a dip
  of 15% (the 2978 -> 4741 -> 3669 us curve of issue 9 dips by 23%)."""
  wide = [(n, t, lo, hi) for n, t, (lo, hi)
          in zip(curve.positions, curve.t_median_s, curve.t_ci_s)
          if (hi - lo) > max_rel_ci * t]
  if len(wide) > max_wide_share * len(curve.positions):
    n, t, lo, hi = max(wide, key=lambda w: (w[3] - w[2]) / w[1])
    return (f'wide CI at {len(wide)} of {len(curve.positions)} N, widest N={n}: '
            f'[{lo * 1e6:.0f}, {hi * 1e6:.0f}] us around {t * 1e6:.0f} us')
  for i, (n, (lo, _)) in enumerate(zip(curve.positions, curve.t_ci_s)):
    for m, (_, hi), kind in zip(curve.positions[i + 1:], curve.t_ci_s[i + 1:],
                                curve.kinds[i + 1:]):
      if kind == curve.kinds[i] and hi < lo * (1 - max_dip):
        return (f'T({m}) <= {hi * 1e6:.0f} us is below T({n}) >= {lo * 1e6:.0f} us '
                f'with the same kernel kind {kind}')
  return None


def measure_references(dtypes=('float32',), shapes=REFERENCE_SHAPES,
                       positions=DEFAULT_POSITIONS, rounds: int = PROBE_ROUNDS, device=None,
                       progress=lambda _: None) -> dict:
  """Measures every reference curve of the probe on the local device; returns
  the probe's JSON-ready result. A curve that fails `quality` is measured once
  more with twice the rounds; if it still fails it is kept `flagged` with why."""
  device = device or jax.devices()[0]
  references = []
  for dtype in dtypes:
    for contraction, features in shapes:
      progress(f'{dtype} [N, {contraction}] x [{contraction}, {features}], '
               f'{len(positions)} values of N, {rounds} rounds')
      curve = sweep_reference(dtype, contraction, features, positions, rounds,
                              device=device)
      reason = quality(curve)
      if reason:
        progress(f'  {reason}; measuring it again with {2 * rounds} rounds')
        curve = sweep_reference(dtype, contraction, features, positions,
                                2 * rounds, seed=1, device=device)
        reason = quality(curve)
      references.append(dict(derive(curve), flagged=reason))
  return dict(
      version=PROBE_VERSION, machine_key=hardware.machine_key(device),
      backend=device.platform, device_kind=device.device_kind,
      measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
      jax=jax.__version__, rounds=rounds,
      conditions=dict(load1=os.getloadavg()[0], cpu=hardware.cpu_description()),
      flagged=[[r['contraction'], r['features'], r['flagged']]
               for r in references if r['flagged']],
      references=references, kinds=summarize(references))


def spot_points(probe: dict) -> list:
  """(reference, N) of the spot check: the largest reference at N = 1, 2 and 8
  (a memory-bound GEMV, the first GEMM, a GEMM that computes), each
  milliseconds long. Dispatch-bound points are not checked: on XLA:CPU they
  are bimodal between compiles (256x256 at N=1 read 42 us, then 106 us, then
  42 us, in one quiet process on 2026-12-06), so they would fire without the
  probe being wrong."""
  largest = max(probe['references'], key=lambda r: r['contraction'] * r['features'])
  return [(largest, n) for n in (1, 2, 8) if n in largest['positions']]


def time_gemm(dtype: str, contraction: int, features: int, positions: int,
              repeats: int = 7, device=None) -> list:
  """Seconds of `repeats` calls of the reference GEMM at one N."""
  device = device or jax.devices()[0]
  rng = np.random.default_rng(0)
  w = jax.device_put(jnp.asarray(rng.standard_normal((contraction, features)),
                                 dtype), device)
  x = jax.device_put(jnp.asarray(rng.standard_normal((positions, contraction)),
                                 dtype), device)
  forward = measure.compile_forward(lambda a, b: a @ b, (x, w))
  calls = {0: lambda: jax.block_until_ready(forward.executable(x, w))}
  return measure.time_interleaved(calls, repeats, warmup=5)[0].tolist()


# How far beyond its cached CI a spot point must move to count: memory
# bandwidth drifts by itself between minutes on a shared host (26.6 to 34.5
# GB/s within one minute, in the project brief), which moves memory-bound
# points by about that much without the probe being wrong.
SPOT_SLACK = 0.2


def spot_check(probe: dict, timer=time_gemm) -> dict:
  """Re-times the spot points (a second or two) and says which moved: a new
  CI (median_ci of the repeats) disjoint from the cached one widened by
  SPOT_SLACK on each side. The probe `moved` when more than half of the
  points moved the same way."""
  points = []
  for ref, n in spot_points(probe):
    i = ref['positions'].index(n)
    cached_lo, cached_hi = ref['t_ci_s'][i]
    now = boundary.median_ci(timer(ref['dtype'], ref['contraction'],
                                  ref['features'], n))
    points.append(dict(shape=[ref['contraction'], ref['features']], positions=n,
                       cached_ci_s=[cached_lo, cached_hi], now_s=list(now),
                       moved=bool(now[2] < cached_lo * (1 - SPOT_SLACK)
                                  or now[1] > cached_hi * (1 + SPOT_SLACK))))
  # The probe moved when most points moved the same way: one point alone is
  # a transient (4096x4096 at N=8 read 8.8 to 16 ms within seven calls on a
  # shared host, 2026-12-06), and re-measuring the probe takes two minutes.
  ways = [1 if p['now_s'][0] > p['cached_ci_s'][1] else -1
          for p in points if p['moved']]
  return dict(checked_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
              points=points,
              moved=max(ways.count(1), ways.count(-1)) * 2 > len(points))


def local_probe(cache_file: str | None = None, dtypes=('float32',),
                shapes=REFERENCE_SHAPES, positions=DEFAULT_POSITIONS,
                rounds: int = PROBE_ROUNDS, refresh: bool = False, device=None,
                progress=lambda _: None, timer=None) -> dict:
  """The probe of this machine, from the cache when it holds this very probe
  and its spot check (spot_check) passes; else measured again, with one line
  saying why. The result carries `spot_check`: what was checked, when."""
  device = device or jax.devices()[0]
  key = json.dumps(dict(machine=hardware.machine_key(device), dtypes=list(dtypes),
                        shapes=[list(s) for s in shapes], positions=list(positions),
                        version=PROBE_VERSION), sort_keys=True)
  checks = []

  def verify(cached):
    check = spot_check(cached, timer or functools.partial(time_gemm, device=device))
    checks.append(check)
    if check['moved']:
      moved = [p for p in check['points'] if p['moved']]
      progress('probe: cached points moved beyond their CIs ('
               + ', '.join(f"{p['shape'][0]}x{p['shape'][1]} N={p['positions']}: "
                           f"{p['now_s'][0] * 1e6:.0f} us vs [{p['cached_ci_s'][0] * 1e6:.0f}, "
                           f"{p['cached_ci_s'][1] * 1e6:.0f}]" for p in moved)
               + '); measuring the probe again')
    return not check['moved']

  probe = results.cached(cache_file, key, lambda: measure_references(
      dtypes, shapes, positions, rounds, device, progress), refresh, verify)
  return dict(probe, spot_check=checks[-1] if checks and not checks[-1]['moved']
              else None)
