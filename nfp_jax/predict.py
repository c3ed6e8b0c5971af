"""Predict T(N) and NFP of a block on a target from its compiled kernels.

The data flow: compile the block at every N for the target (compile.py, no
device needed for spec-table GPUs), read each kernel's kind and tiles (hlo.py),
price them (principle.py) with the target's balance (spec table, or the local
microbenchmarks and granularity probe), and find the predicted boundary.
A whole model is composed: one decoder layer compiled and counted n_layers
times, plus the model without layers (embedding, final norm, LM head); its temp
and output buffers (which may fault in fresh on every call) are those of the
whole compiled program, from its memory_analysis.
"""

import dataclasses
from typing import Callable, Sequence

from nfp_jax import autotune as autotune_lib
from nfp_jax import boundary
from nfp_jax import compile as compile_lib
from nfp_jax import hardware
from nfp_jax import principle
from nfp_jax import targets as targets_lib


@dataclasses.dataclass(frozen=True)
class Prediction:
  """A predicted curve with its boundaries and where every input came from."""
  positions: list
  t_pred_s: list
  t_resource_s: list
  nfp_predicted: dict  # tau key -> N
  nfp_resource: dict
  n_idle: dict
  binding_mechanism: dict  # tau key -> mechanism or None (no crossing)
  target: str
  tiling_source: str
  placeholder: bool
  hardware: dict
  probe: dict | None  # provenance of the granularity probe used (CPU)
  composition: str  # 'compiled' or 'layer x n_layers + head'
  points: list  # per N: kernels priced, fixed costs
  compile_s: float
  # XLA:TPU's own cost model beside the principle (TPU targets; else None):
  # optimal_seconds of compiled.cost_analysis() per N (less the -1 s that
  # each uncosted custom call adds, hlo_tpu.Program.compiler_seconds), and the
  # program's
  # estimated_cycles at the spec clock (pricing_tpu.cycles_time).
  t_compiler_s: list | None = None
  nfp_compiler: dict | None = None
  t_cycles_s: list | None = None
  nfp_cycles: dict | None = None
  windows: list | None = None  # per N: the windows XLA:TPU chose per fusion

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def target_balance(target: targets_lib.Target, dtype: str,
                   local_balance=None) -> hardware.Balance:
  """The balance of a target: the spec table, or the local measured balance.

  On NVIDIA GPUs XLA runs float32 matmuls in TF32 by default (JAX's default
  matmul precision), so a float32 block is priced at the TF32 peak there.
  """
  if target.spec is not None:
    spec = target.spec
    key = 'tf32' if dtype == 'float32' and 'tf32' in spec.peak_flops else dtype
    if spec.tpu and dtype == 'float32':
      key = 'bfloat16'  # XLA:TPU's default precision: one bf16 MXU pass
    balance = hardware.spec_balance(target.name, key)
    return dataclasses.replace(balance, dtype=dtype,
                               details=dict(balance.details, peak_dtype=key))
  if local_balance is None:
    raise ValueError(f'Target {target.name!r} needs the local measured balance.')
  return local_balance


def _compile_points(cfg, positions, target, tiling, progress):
  compiled = compile_lib.compile_hlo_many(cfg, positions, target, tiling)
  for c in compiled:
    progress(f'{cfg.module} N={c.positions}: compiled for {target.name} in '
             f'{c.compile_s:.2f} s')
  return compiled


def _price(compiled, balance, target, probe):
  autotune = (autotune_lib.chooser(target.spec)
              if compiled.tiling_source == 'model-autotune' else None)
  return principle.price_module(compiled.kernels(), compiled.positions, balance,
                                target=target, probe=probe,
                                memory=compiled.memory, autotune=autotune)


def _scaled(point: principle.CurvePoint, count: int) -> tuple:
  return tuple(dataclasses.replace(k, bytes=k.bytes * count, flops=k.flops * count,
                                   t_memory=k.t_memory * count,
                                   t_compute=k.t_compute * count, t_s=k.t_s * count)
               for k in point.kernels)


def _composed(head, layer, n_layers, memory, balance):
  """head + n_layers x layer, with one call floor, and the fresh buffers of the
  whole program: `memory` is its memory_analysis (temp and output sizes as
  XLA allocates them; none of the layer or head compiles tells how XLA lays
  out the temps of n_layers layers)."""
  kernels = head.kernels + _scaled(layer, n_layers)
  floor = head.floor_s + n_layers * (layer.floor_s - balance.call_floor_s)
  alloc = principle.fresh_buffer_time(memory, balance)
  return principle.CurvePoint(head.positions, kernels, floor, alloc,
                              floor + alloc + sum(k.t_s for k in kernels))


def program_memory(sweep_points) -> dict:
  """N -> memory_analysis of a sweep's compiled executables (its ok points),
  for `predict(memory=...)`: a model is then not compiled a second time."""
  return {p['positions']: p['memory_analysis'] for p in sweep_points
          if p.get('status') == 'ok' and p.get('memory_analysis')}


def _program_memory(cfg, positions, target, tiling, balance, memory, progress):
  """N -> the whole program's memory_analysis: from `memory` where given (a
  sweep's compiled executables), else compiled here; {} per N where fresh
  buffers are not priced (no page-fault figures in the balance)."""
  memory = dict(memory or {})
  missing = [n for n in positions if n not in memory]
  if missing and balance.fault_bandwidth and balance.fresh_threshold_bytes:
    for c in _compile_points(cfg, missing, target, tiling, progress):
      memory[c.positions] = c.memory
  return {n: memory.get(n) or {} for n in positions}


def predict(cfg, positions: Sequence[int], *, target: targets_lib.Target,
            tiling: str | None = None, balance=None, probe: dict | None = None,
            taus: Sequence[float] = boundary.TAUS, memory: dict | None = None,
            compiled: Sequence | None = None,
            progress: Callable[[str], None] = lambda _: None) -> Prediction:
  """Predicts T(N) at every N of `positions` (which starts at 1).

  Args:
    cfg: the block.
    positions: the swept N.
    target: a local device (with `balance` measured here and, on the CPU, the
      granularity `probe`), or a spec-table target compiled deviceless.
    tiling: the tiling source (compile.py); None: the target's default.
    balance: the local measured balance (required for local targets).
    probe: the granularity probe of this machine (CPU), or None.
    taus: tolerances.
    memory: for a model, N -> the memory_analysis of the whole compiled
      program (a sweep's points have it); compiled here where missing and
      needed.
    compiled: the programs already compiled for these N on the local target
      (hlo.CompiledHlo per N, in order, as a sweep keeps them from the
      executables it timed): priced as they are, with no second compile; a
      whole model is then priced from all of its kernels.
    progress: called with a line per compiled N.
  """
  balance = target_balance(target, cfg.dtype, balance)
  if compiled is not None:
    compiled = list(compiled)
    if [c.positions for c in compiled] != list(positions):
      raise ValueError('compiled programs must be given for exactly the swept N.')
    points = [_price(c, balance, target, probe) for c in compiled]
    composition = 'compiled (the executables the sweep timed)'
  elif cfg.module == 'model':
    layer_cfg = dataclasses.replace(cfg, module='layer')
    head_cfg = dataclasses.replace(cfg, n_layers=0)
    layers = _compile_points(layer_cfg, positions, target, tiling, progress)
    heads = _compile_points(head_cfg, positions, target, tiling, progress)
    memory = _program_memory(cfg, positions, target, tiling, balance, memory,
                             progress)
    points = [_composed(_price(h, balance, target, probe),
                        _price(l, balance, target, probe), cfg.n_layers,
                        memory[h.positions], balance)
              for h, l in zip(heads, layers)]
    compiled = layers + heads
    composition = f'layer x {cfg.n_layers} + head'
  else:
    compiled = _compile_points(cfg, positions, target, tiling, progress)
    points = [_price(c, balance, target, probe) for c in compiled]
    composition = 'compiled'
  t_pred = [p.t_s for p in points]
  t_res = [principle.resource_time(cfg, n, balance) for n in positions]
  nfp_pred, nfp_res, mechanism = {}, {}, {}
  for tau in taus:
    key = boundary.tau_key(tau)
    pred = boundary.find(positions, [t / t_pred[0] for t in t_pred], tau=tau)
    nfp_pred[key] = pred.nfp
    mechanism[key] = principle.binding_mechanism(points, pred.nfp, pred.bracket[1])
    nfp_res[key] = boundary.find(positions, [t / t_res[0] for t in t_res],
                                 tau=tau).nfp
  compiler = _compiler_columns(cfg, positions, target, compiled, taus)
  probe_info = None
  if probe and target.platform == 'cpu':
    probe_info = {k: probe.get(k) for k in ('machine_key', 'measured_at', 'version',
                                            'jax', 'rounds', 'conditions',
                                            'flagged', 'spot_check')}
  return Prediction(
      positions=list(positions), t_pred_s=t_pred, t_resource_s=t_res,
      nfp_predicted=nfp_pred, nfp_resource=nfp_res,
      n_idle=principle.idle_compute(cfg, balance, taus),
      binding_mechanism=mechanism, target=target.name,
      tiling_source=compiled[0].tiling_source, placeholder=compiled[0].placeholder,
      hardware=balance.to_dict(), probe=probe_info, composition=composition,
      points=[dataclasses.asdict(p) for p in points],
      compile_s=sum(c.compile_s + c.lower_s for c in compiled), **compiler)


def _compiler_columns(cfg, positions, target, compiled, taus) -> dict:
  """t_compiler_s / nfp_compiler (optimal_seconds), t_cycles_s / nfp_cycles
  (estimated_cycles at the spec clock) and the windows per N, on TPU targets.
  A model is composed as the principle is: head + n_layers x layer."""
  if target.platform != 'tpu':
    return {}
  from nfp_jax import pricing_tpu  # pylint: disable=g-import-not-at-top
  programs = [c.program() for c in compiled]
  count = len(positions)
  def per_n(value):
    values = [value(p) for p in programs]
    if cfg.module == 'model':  # layers first, then heads (predict above)
      return [h + cfg.n_layers * l for l, h in zip(values[:count], values[count:])]
    return values
  optimal = per_n(lambda p: p.compiler_seconds or 0.0)
  cycles = per_n(lambda p: pricing_tpu.cycles_time(p, target.spec.tpu))
  def nfp(curve):
    return {boundary.tau_key(t): boundary.find(
        positions, [v / curve[0] for v in curve], tau=t).nfp for t in taus}
  windows = [[dict(fusion=f.name, op='+'.join(f.source_ops) or None,
                   kind=f.kind, output_window=f.output_window_bounds,
                   kernel_window=f.kernel_window_bounds,
                   iterations=f.iteration_bounds,
                   estimated_cycles=f.estimated_cycles)
              for f in p.fusions if f.kind != 'tpu_copy' and (
                  f.dots or f.estimated_cycles or f.kind == 'tpu_custom_call')]
             for p in programs[:count]]
  return dict(t_compiler_s=optimal, nfp_compiler=nfp(optimal),
              t_cycles_s=cycles, nfp_cycles=nfp(cycles), windows=windows)


def for_sweep(cfg, summary: dict, compiled: Sequence, *, target, balance,
              probe: dict | None = None) -> dict:
  """The principle's prediction attached to a measured sweep: the executables
  the sweep timed, priced with the memory bandwidth the sweep's sentinel saw
  (so a run in a faster or slower memory regime is predicted for that regime)
  and, beside it, with the cached balance's bandwidth. Summary fields."""
  positions = summary['positions']
  seen = (summary.get('conditions') or {}).get('bandwidth_gbs')
  run_balance = (dataclasses.replace(
      balance, bandwidth=seen * 1e9,
      source=f'{balance.source}; bandwidth of this sweep\'s sentinel')
                 if seen else balance)
  p = predict(cfg, positions, target=target, balance=run_balance, probe=probe,
              compiled=compiled)
  cached = (predict(cfg, positions, target=target, balance=balance, probe=probe,
                    compiled=compiled) if seen else p)
  return dict(
      t_pred_s=p.t_pred_s, nfp_predicted=p.nfp_predicted,
      binding_mechanism=p.binding_mechanism, nfp_resource=p.nfp_resource,
      t_resource_s=p.t_resource_s,
      nfp_predicted_cached_balance=cached.nfp_predicted,
      prediction=dict(target=p.target, tiling_source=p.tiling_source,
                      probe=p.probe, composition=p.composition,
                      bandwidth_gbs=dict(sweep=seen,
                                         cached_balance=balance.bandwidth / 1e9)))
