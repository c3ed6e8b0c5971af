"""One block's T(N) curve in several frameworks, measured by one harness.

Frameworks:
  jax            the Flax block, AOT-compiled per N by XLA (as the sweep does);
  torch          its PyTorch twin (nfp_jax.torch_blocks), eager;
  torch-compile  the twin under torch.compile, one static graph per N.

Each framework gets a callable per N; `sweep.time_curve` times them (interleaved
randomized rounds, every sample kept) and gives R(N), NFP and N_idle, so the
frameworks differ only in what the calls run. Frameworks are timed one after
the other, never interleaved with each other: two thread pools taking turns
would slow each other. Beside the curve, each N records the kernels that ran:
for JAX the kernel kinds of the optimized HLO (nfp_jax.hlo: cpu_gemv, cpu_ynn,
...), for PyTorch the ops torch.profiler saw. PyTorch is imported only when a
torch framework is asked for, so this module works without the torch extra.
"""

import collections
import dataclasses
import hashlib
import json
import os
import time
from typing import Callable, Sequence

import jax

from nfp_jax import blocks
from nfp_jax import boundary
from nfp_jax import hlo
from nfp_jax import measure
from nfp_jax import records
from nfp_jax import sweep

FRAMEWORKS = ('jax', 'torch', 'torch-compile')
TORCH_FRAMEWORKS = ('torch', 'torch-compile')


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A framework's forwards, ready to be timed."""
  calls: dict  # N -> no-argument callable returning once the output is ready
  setup_s: dict  # N -> compile time (jax) or first call (torch, compile included)
  kernels: dict  # N -> list of {op, kind or calls/self_share}
  failed: dict  # N -> error text
  provenance: dict


def framework_config_id(cfg, positions: Sequence[int], framework: str) -> str:
  """The config_id of a framework's curve: the sweep's own for jax, so a JAX
  comparison and a JAX sweep of the same block share it; hashed with the
  framework name for the others."""
  config_id = cfg.config_id(positions)
  if framework == 'jax':
    return config_id
  payload = json.dumps({'config_id': config_id, 'framework': framework})
  return hashlib.sha256(payload.encode()).hexdigest()[:12]


def xla_kernels(kernels: list) -> list:
  """A summary of a module's kernels (hlo.Kernel records): each dot kernel's
  source op and kind (cpu_gemv at N=1, cpu_ynn for YNNPACK fusions, ...), then
  the count of the other kernels (elementwise, gathers, sorts)."""
  dots = collections.Counter()
  others = 0
  for kernel in kernels:
    if kernel.kind == 'other':
      others += 1
    else:
      dots[(kernel.source_op or kernel.op_name or kernel.name, kernel.kind)] += 1
  return [dict(op=op, kind=kind, calls=calls) for (op, kind), calls in
          dots.items()] + [dict(op='other', kind='other', calls=others)]


def _each_position(positions: Sequence[int], prepare_one, progress) -> Prepared:
  """Runs prepare_one(n) -> (call, setup_s, kernels) at every N (sweep.each_position)."""
  def logged(n):
    call, setup_s, kernels = prepare_one(n)
    progress(f'N={n}: ready in {setup_s:.2f} s')
    return call, setup_s, kernels
  done, failed = sweep.each_position(positions, logged, progress)
  return Prepared({n: d[0] for n, d in done.items()},
                  {n: d[1] for n, d in done.items()},
                  {n: d[2] for n, d in done.items()}, failed, {})


def prepare_jax(cfg, positions: Sequence[int], *, device=None,
                progress: Callable[[str], None] = lambda _: None) -> Prepared:
  """AOT-compiles the Flax block at every N, as the sweep does."""
  device = device or jax.devices()[0]
  fn, state = blocks.forward(cfg)
  state = jax.device_put(state, device)

  def prepare_one(n):
    args = jax.device_put((state,) + blocks.inputs(cfg, n, max(positions)), device)
    forward = measure.compile_forward(fn, args, read=True, positions=n)
    jax.block_until_ready(forward.executable(*args))
    try:
      kernels = xla_kernels(forward.hlo.kernels())
    except hlo.HloParseError as e:
      kernels = [dict(op='unreadable HLO', kind=sweep.error_text(e), calls=0)]
    return (lambda: jax.block_until_ready(forward.executable(*args)),
            forward.compile_s, kernels)

  prepared = _each_position(positions, prepare_one, progress)
  return dataclasses.replace(prepared, provenance=dict(jax=jax.__version__))


def prepare_torch(cfg, positions: Sequence[int], *, compiled: bool,
                  progress: Callable[[str], None] = lambda _: None) -> Prepared:
  """Builds the PyTorch twin once and runs it at every N (eager or compiled;
  setup_s is the first call, compilation included)."""
  from nfp_jax.torch_blocks import run  # pylint: disable=g-import-not-at-top
  module = run.twin(cfg, 'compile' if compiled else 'eager')

  def prepare_one(n):
    forward = run.prepare(module, cfg, n, max(positions))
    return forward.call, forward.first_call_s, forward.kernels

  prepared = _each_position(positions, prepare_one, progress)
  return dataclasses.replace(prepared, provenance=run.provenance())


def prepare(framework: str, cfg, positions: Sequence[int], *, device=None,
            progress: Callable[[str], None] = lambda _: None) -> Prepared:
  if framework == 'jax':
    return prepare_jax(cfg, positions, device=device, progress=progress)
  if framework in TORCH_FRAMEWORKS:
    return prepare_torch(cfg, positions, compiled=framework == 'torch-compile',
                         progress=progress)
  raise ValueError(f'Unknown framework {framework!r}; choose one of {FRAMEWORKS}.')


def measure_framework(framework: str, cfg, positions: Sequence[int], *, balance,
                      plan: measure.RoundPlan = measure.RoundPlan(), warmup: int = 2,
                      taus: Sequence[float] = boundary.TAUS, device=None,
                      progress: Callable[[str], None] = lambda _: None
                      ) -> tuple[list, dict]:
  """One framework's curve of one block: (point records, summary record).

  A failure at positions[0] (a framework that cannot run the block at all,
  such as torch.compile where it cannot trace an op) gives no points and a
  summary with status 'failed' and the error; a failure at a larger N is a
  failed point. Either way the comparison goes on with the other frameworks.
  """
  start = time.perf_counter()
  load_before = os.getloadavg()[0]
  config_id = framework_config_id(cfg, positions, framework)
  head = dict(config_id=config_id, framework=framework)
  summary = dict(kind='summary', **head, module=cfg.module, preset=cfg.preset,
                 config=cfg.to_dict(), swept_positions=list(positions),
                 hardware=balance.to_dict())
  try:
    prepared = prepare(framework, cfg, positions, device=device,
                       progress=progress)
  except Exception as e:  # pylint: disable=broad-except
    return [], dict(summary, status='failed', error=sweep.error_text(e),
                    wall_s=time.perf_counter() - start)
  curve = sweep.time_curve(cfg, prepared.calls, balance=balance, plan=plan,
                           warmup=warmup, taus=taus, device=device,
                           progress=progress)
  points = sweep.point_records(
      head, positions, curve, prepared.failed,
      {n: dict(setup_s=prepared.setup_s[n], kernels=prepared.kernels[n])
       for n in prepared.calls})
  curve.pop('samples_s')
  summary.update(
      status='ok', **curve, failed_positions=sorted(prepared.failed),
      t1_s=curve['t_median_s'][0],
      setup_s={str(n): s for n, s in prepared.setup_s.items()},
      kernels={str(n): k for n, k in prepared.kernels.items()},
      framework_provenance=prepared.provenance,
      # The 1-minute load average before and after: on a shared machine,
      # threads of other processes stretch T(N) (PyTorch's OpenMP barriers
      # more than XLA's work-stealing pool).
      load_average=[load_before, os.getloadavg()[0]],
      wall_s=time.perf_counter() - start)
  return points, summary


def comparison(summaries: Sequence[records.Summary]) -> dict:
  """compare.json of one block: per framework T(1), NFP, N_idle, kernels."""
  first = summaries[0]
  frameworks = {}
  for s in summaries:
    entry = dict(config_id=s.config_id, status=s.status)
    if not s.ok:
      entry['error'] = s.error
    else:
      record = s.to_json()
      entry.update({k: record.get(k) for k in (
          't1_s', 'nfp', 'n_idle', 'nfp_bracket', 'nfp_range', 'nfp_interval',
          'nfp_status', 'n_idle_overprediction', 't1_roofline_fraction',
          'positions', 'failed_positions', 't_median_s', 'ratio', 'ratio_ci',
          'verdicts', 'setup_s', 'kernels', 'framework_provenance')
                    if k in record}, load_average=s.get('load_average'))
    frameworks[s.framework_name] = entry
  return dict(kind='compare', module=first.module, preset=first.preset,
              config=first.config, positions=first.get('swept_positions'),
              hardware=first.hardware, frameworks=frameworks)
