"""Validation of the principle: the cases, running one, scoring, the report.

A case is a block measured on the local CPU (the sweep's harness) and predicted
by the principle from its compiled kernels, the measured balance and the
granularity probe, which never see the case's curve. `run_case` takes the
measuring function as an argument, so tests give it a fake one.

Scoring (`summarize`), per predictor: the principle (`nfp_predicted`),
resource-only (`nfp_resource`), idle-compute (`n_idle`) and always-1. Each is
scored by the share of cases within x1.5, the share within x2 and the median
|log2 error| against the measured NFP, with these rules:
  - the measured target is the NFP interval [low, high] where the sweep
    reports one (`nfp_interval`), else the point NFP; a prediction inside it
    has error 0, else the log2 factor to its nearer end;
  - predictions are read on the swept grid: one beyond the grid end counts as
    the grid end (the principle's and resource-only curves end there anyway);
  - symmetric censoring: when the measured curve never crosses within the grid
    (NFP >= the grid end), a prediction at or beyond the grid end counts as
    right, for every predictor alike;
  - a case whose measured boundary is `unresolved` (`nfp_status`) is reported
    as such and kept out of the shares.
For every miss larger than x2, `missing_mechanism` names what the model lacks,
by a fixed rule over the measured and predicted curves.

External anchors (public measured GPU curves) are read and scored in
nfp_jax.anchors.
"""

import dataclasses
import math
import statistics
from typing import Callable, Sequence

from nfp_jax import boundary
from nfp_jax import config
from nfp_jax import errors
from nfp_jax import predict
from nfp_jax import targets

WITHIN_1_5 = math.log2(1.5)
WITHIN_2 = 1.0
# Predictor -> how a case record holds its NFP per tau (None: always 1).
PREDICTORS = {'principle': 'nfp_predicted', 'resource': 'nfp_resource',
              'idle': 'n_idle', 'always_1': None}
PREDICTOR_LABELS = {'principle': 'principle', 'resource': 'resource-only',
                    'idle': 'idle-compute', 'always_1': 'always 1'}


# ----------------------------------------------------------------------------
# Cases.

@dataclasses.dataclass(frozen=True)
class Case:
  """One validation case: a block by preset, scale and choices (float32 unless
  a choice says otherwise)."""
  name: str
  module: str
  preset: str
  scale: float
  quick: bool = False
  choices: tuple = ()  # (field, value) pairs for config.resolve

  def config(self):
    choices = dict(self.choices)
    overrides = choices.pop('overrides', None)
    return config.resolve(self.module, self.preset, scale=self.scale,
                          overrides=dict(overrides or ()),
                          **dict({'dtype': 'float32'}, **choices))


def _moe(size, preset, scale, impl, routing, quick=False):
  return Case(f'moe-{size}-{impl}-{routing.replace(":", "")}', 'moe', preset, scale,
              quick, (('moe_impl', impl), ('routing', routing)))


def _attention(size, preset, scale, mask, kv_len, quick=False):
  return Case(f'attention-{size}-{mask}-L{kv_len}', 'attention', preset, scale,
              quick, (('mask', mask), ('kv_len', kv_len)))


# Sizes, dtypes, KV lengths and routings chosen to span the regimes on XLA:CPU:
# switch-bound (the GEMV at N=1 vs YNNPACK from N=2 on large float32 weights),
# overhead-bound (small blocks), conversion- and fault-bound (bfloat16 weights
# converted to float32 on every call), KV-bound attention (long caches, thin
# projections), and MoE whose activated experts grow with N (gather) or do not
# (dense, ragged: all experts every call).
CASES = (
    [Case('dense-large', 'dense', 'llama3-8b', 0.5, True),
     Case('dense-small', 'dense', 'llama3-8b', 1 / 32),
     Case('dense-bf16', 'dense', 'llama3-8b', 0.25, True, (('dtype', 'bfloat16'),)),
     Case('dense-bf16-small', 'dense', 'llama3-8b', 1 / 16, False,
          (('dtype', 'bfloat16'),))]
    + [_moe(size, preset, scale, impl, routing,
            quick=(routing == 'uniform' and (size, impl) in (
                ('olmoe', 'gather'), ('olmoe', 'dense'), ('mixtral', 'ragged'))))
       for size, preset, scale in (('olmoe', 'olmoe-1b-7b', 0.25),
                                   ('mixtral', 'mixtral-8x7b', 0.125))
       for impl in ('gather', 'ragged', 'dense') for routing in ('uniform', 'zipf:1.2')]
    + [_attention(size, preset, scale, mask, kv_len,
                  quick=(mask == 'block' and kv_len in (65536, 8192)))
       for size, preset, scale, kv_lens in (
           ('thin', 'llama3-8b', 1 / 32, (16384, 65536)),
           ('mha', 'llada-8b', 0.125, (8192,)),
           ('large', 'llama3-8b', 0.5, (4096,)))
       for mask in config.MASKS for kv_len in kv_lens]
    + [Case('layer-moe', 'layer', 'olmoe-1b-7b', 0.25, False, (('routing', 'uniform'),)),
       Case('layer-dense', 'layer', 'llama3-8b', 0.125),
       Case('model-dense', 'model', 'llama3-8b', 0.125, True,
            (('overrides', (('n_layers', 4),)),)),
       Case('model-moe', 'model', 'olmoe-1b-7b', 0.125, False,
            (('overrides', (('n_layers', 4),)), ('routing', 'uniform')))])


def select_cases(names: Sequence[str] | None = None, quick: bool = False) -> list:
  """The named cases (in CASES order), else the quick subset or all of them;
  every one's configuration is checked (ConfigError) before anything runs."""
  known = {c.name for c in CASES}
  unknown = [n for n in names or () if n not in known]
  if unknown:
    raise errors.ConfigError(f'Unknown case {unknown[0]!r}; see --list.')
  if names:
    cases = [c for c in CASES if c.name in names]
  else:
    cases = [c for c in CASES if c.quick] if quick else list(CASES)
  for case in cases:
    case.config()
  return cases


# ----------------------------------------------------------------------------
# Running a case.

def sweep_measure(*, plan, device=None, progress=lambda _: None) -> Callable:
  """The measuring function of a case: the sweep's harness
  (sweep.measure_block with the round plan `plan`)."""
  from nfp_jax import sweep  # pylint: disable=g-import-not-at-top
  def measure(cfg, positions, balance):
    return sweep.measure_block(cfg, positions, plan=plan, balance=balance,
                               device=device, progress=progress)
  return measure


def run_case(case: Case, positions: Sequence[int], *, balance, probe: dict | None,
             measure: Callable) -> dict:
  """Measures a case with `measure(cfg, positions, balance)` (a
  sweep.SweepResult: points and summary) and predicts it on the local CPU;
  returns its record (case_record). The prediction prices the executables the
  sweep timed (one compile per N); a measuring function that keeps none gives
  each N's memory_analysis from its points instead."""
  cfg = case.config()
  measured = measure(cfg, list(positions), balance)
  summary = measured.summary
  compiled = getattr(measured, 'compiled', None)
  prediction = predict.predict(
      cfg, summary['positions'], target=targets.resolve('cpu'), balance=balance,
      probe=probe, memory=predict.program_memory(measured.points),
      compiled=[compiled[n] for n in summary['positions']] if compiled else None)
  return case_record(case.name, summary, prediction, boundary.TAUS)


def run_cases(cases: Sequence[Case], positions: Sequence[int], *, measure: Callable,
              balance_for: Callable, probe: dict | None,
              on_case: Callable = lambda i, case, record: None) -> list:
  """Every case's record, in order; `balance_for(dtype)` gives the balance of
  a case's compute dtype; `on_case(i, case, record)` after each."""
  records = []
  for i, case in enumerate(cases):
    record = run_case(case, positions, balance=balance_for(case.config().dtype),
                      probe=probe, measure=measure)
    records.append(record)
    on_case(i, case, record)
  return records


def _kinds_at(prediction, positions: int) -> list:
  point = next((p for p in prediction.points if p['positions'] == positions), None)
  return sorted((k['source_op'] or '', k['kind']) for k in (point or {}).get(
      'kernels', ()))


def _next_position(positions, nfp):
  later = [n for n in positions if n > nfp]
  return later[0] if later else None


MISSING_MECHANISMS = {
    'n1_cost': 'T_pred(1) is x{factor:.1f} {direction} the measured T(1): the '
               'N=1 kernels\' cost (GEMV speed, fixed costs) is not modelled '
               'for this block, and every ratio rests on it',
    'switch_cost': 'the kernel switch at N={a}->{b} costs more than the '
                   'probe\'s reference curves price it',
    'hidden_step': 'T(N) steps at N={a}->{b} with the same compiled kernels: a '
                   'granularity inside the library kernel (tile, threads, '
                   'caches) that the probe\'s shapes do not carry',
    'overpriced_step': 'the predicted {mechanism} step at N={a}->{b} is not in '
                       'the measured curve: its cost is priced too high',
}


def missing_mechanism(measured: dict, prediction, key: str,
                      error: float) -> dict | None:
  """What the model lacks for a miss larger than x2 (|error| > 1), by rule:

  1. n1_cost: the predicted T(1) is off the measured one by more than x2;
  2. over-prediction (the measured curve crosses first, at a -> b): the
     compiled kernels change between a and b -> switch_cost, else hidden_step;
  3. under-prediction (the predicted curve crosses first, at a -> b, by its
     binding mechanism) -> overpriced_step.
  None for a miss within x2.
  """
  if abs(error) <= WITHIN_2:
    return None
  t1_measured, t1_pred = measured['t_median_s'][0], prediction.t_pred_s[0]
  factor = t1_pred / t1_measured
  if max(factor, 1 / factor) > 2:
    name, fields = 'n1_cost', dict(factor=max(factor, 1 / factor),
                                   direction='above' if factor > 1 else 'below')
  elif error > 0:
    a = measured['nfp'][key]
    b = _next_position(measured['positions'], a)
    switched = _kinds_at(prediction, a) != _kinds_at(prediction, b)
    name, fields = ('switch_cost' if switched else 'hidden_step'), dict(a=a, b=b)
  else:
    a = prediction.nfp_predicted[key]
    b = _next_position(prediction.positions, a)
    name, fields = 'overpriced_step', dict(
        a=a, b=b, mechanism=prediction.binding_mechanism[key] or 'predicted')
  return dict(name=name, text=MISSING_MECHANISMS[name].format(**fields))


# ----------------------------------------------------------------------------
# Scoring.

def log2_error(predicted: float, measured: float) -> float:
  return math.log2(predicted / measured)


def interval_error(predicted: float, low: float, high: float, grid_end: int,
                   censored: bool) -> float:
  """log2 error of a predicted NFP against a measured interval [low, high] on
  a grid ending at grid_end; 0 inside it. A prediction beyond the grid end
  counts as the grid end; when the measured curve never crosses in the grid
  (censored) the interval reaches to the grid end, so a prediction there is
  right."""
  predicted = min(predicted, grid_end)
  if censored:
    low, high = min(low, grid_end), grid_end
  if predicted < low:
    return log2_error(predicted, low)
  if predicted > high:
    return log2_error(predicted, high)
  return 0.0


def measured_target(record: dict, key: str) -> dict:
  """The measured side of a case at a tau key: interval, censoring, status.

  Read defensively: `nfp_interval` and `nfp_status` come from sweeps that
  report them (older records have neither: the point NFP, status 'decided'
  unless the record says otherwise); censored when the measured bracket has
  no next N (or, without a bracket, the NFP is the grid end).
  """
  nfp = record['nfp_measured'][key]
  grid_end = record['positions'][-1]
  interval = (record.get('nfp_interval') or {}).get(key)
  if (isinstance(interval, (list, tuple)) and len(interval) == 2
      and all(isinstance(v, (int, float)) and v > 0 for v in interval)):
    low, high = sorted(float(v) for v in interval)
  else:
    low = high = float(nfp)
  bracket = (record.get('nfp_bracket') or {}).get(key)
  censored = (bracket[1] is None) if bracket else nfp >= grid_end
  status = (record.get('nfp_status') or {}).get(key) or 'decided'
  return dict(nfp=nfp, low=low, high=high, grid_end=grid_end, censored=censored,
              status=status)


def predicted_nfp(record: dict, predictor: str, key: str) -> float:
  field = PREDICTORS[predictor]
  return 1 if field is None else record[field][key]


def case_errors(record: dict, key: str) -> dict:
  """predictor -> log2 error of its NFP against the measured target."""
  m = measured_target(record, key)
  return {p: interval_error(predicted_nfp(record, p, key), m['low'], m['high'],
                            m['grid_end'], m['censored'])
          for p in PREDICTORS}


def score(errors_list: Sequence[float]) -> dict:
  """Share within x1.5, share within x2 and median |log2 error|."""
  if not errors_list:
    return dict(cases=0, share_within_1_5x=None, share_within_2x=None,
                median_abs_log2_error=None)
  magnitudes = [abs(e) for e in errors_list]
  share = lambda bound: sum(e <= bound + 1e-12 for e in magnitudes) / len(magnitudes)
  return dict(cases=len(magnitudes), share_within_1_5x=share(WITHIN_1_5),
              share_within_2x=share(WITHIN_2),
              median_abs_log2_error=statistics.median(magnitudes))


def summarize(records: Sequence[dict], tau_key: str = '0.1') -> dict:
  """Scores per predictor over the decided cases (see the module docstring)."""
  decided = [r for r in records
             if measured_target(r, tau_key)['status'] != 'unresolved']
  per_case = [case_errors(r, tau_key) for r in decided]
  scores = {p: score([e[p] for e in per_case]) for p in PREDICTORS}
  principle = scores['principle']
  def better(other):
    a, b = principle, scores[other]
    if not a['cases']:
      return False
    return (a['share_within_1_5x'] > b['share_within_1_5x'] or (
        a['share_within_1_5x'] == b['share_within_1_5x']
        and a['median_abs_log2_error'] < b['median_abs_log2_error']))
  measured = [measured_target(r, tau_key) for r in decided]
  unresolved = [r for r in records if r not in decided]
  return dict(
      tau=tau_key, cases=len(records), decided=len(decided),
      unresolved=[r['name'] for r in unresolved],
      unresolved_intervals=[unresolved_detail(r, tau_key) for r in unresolved],
      censored=sum(m['censored'] for m in measured),
      share_measured_above_2=(sum(m['nfp'] > 2 for m in measured) / len(measured)
                              if measured else None),
      scores=scores,
      principle_beats={p: better(p) for p in PREDICTORS if p != 'principle'},
      misses_over_2x=[r['name'] for r, e in zip(decided, per_case)
                      if abs(e['principle']) > WITHIN_2])


def unresolved_detail(record: dict, key: str) -> dict:
  """An unresolved case beside its bootstrap interval: whether the principle's
  NFP lies inside it, and whether the whole interval lies above 2 (NFP > 2 is
  then supported although its value is not decided). Not part of the shares."""
  m = measured_target(record, key)
  error = case_errors(record, key)['principle']
  return dict(name=record['name'], interval=[m['low'], m['high']],
              principle=predicted_nfp(record, 'principle', key),
              principle_inside=error == 0.0, above_2=m['low'] > 2)


def case_record(name: str, measured_summary: dict, prediction, taus) -> dict:
  """One case of the report from a measured sweep summary and a Prediction."""
  keys = [boundary.tau_key(t) for t in taus]
  nfp = measured_summary['nfp']
  record = dict(
      name=name, config_id=measured_summary['config_id'],
      config=measured_summary['config'], positions=measured_summary['positions'],
      nfp_measured=nfp, nfp_bracket=measured_summary.get('nfp_bracket', {}),
      nfp_range=measured_summary.get('nfp_range', {}),
      nfp_interval=measured_summary.get('nfp_interval', {}),
      nfp_status=measured_summary.get('nfp_status', {}),
      unresolved_reason=measured_summary.get('unresolved_reason', {}),
      nfp_predicted=prediction.nfp_predicted, nfp_resource=prediction.nfp_resource,
      n_idle=measured_summary['n_idle'],
      binding_mechanism=prediction.binding_mechanism,
      idle_overprediction={k: measured_summary['n_idle'][k] / nfp[k] for k in keys},
      # Absolute latency error of the predicted curve (for a model: the error of
      # composing it from one compiled layer and the head).
      t_abs_log2_error=statistics.median(
          abs(math.log2(p / m)) for p, m in zip(prediction.t_pred_s,
                                                measured_summary['t_median_s'])),
      t_median_s=measured_summary['t_median_s'], ratio=measured_summary['ratio'],
      ratio_ci=measured_summary['ratio_ci'], t_pred_s=prediction.t_pred_s,
      t1_roofline_fraction=measured_summary['t1_roofline_fraction'])
  record['log2_error'] = {k: case_errors(record, k) for k in keys}
  record['missing_mechanism'] = {
      k: missing_mechanism(measured_summary, prediction, k,
                           record['log2_error'][k]['principle']) for k in keys}
  return record


# ----------------------------------------------------------------------------
# The report.

def _fmt(value) -> str:
  if value is None:
    return '-'
  return f'{value:.2f}' if isinstance(value, float) else str(value)


def _pct(value) -> str:
  return '-' if value is None else f'{value:.0%}'


def _measured_text(record: dict, key: str) -> str:
  m = measured_target(record, key)
  text = f"{m['nfp']}{'+' if m['censored'] else ''}"
  if m['low'] != m['high']:
    text += f" [{m['low']:g}, {m['high']:g}]"
  return text + (' unresolved' if m['status'] == 'unresolved' else '')


def _case_table(records: Sequence[dict], key: str) -> list:
  lines = ['| case | NFP measured | principle | mechanism | resource-only | '
           'idle-compute | log2 err (principle) | T(1) roofline | T(N) err | '
           'missing mechanism (misses > x2) |',
           '|' + '---|' * 10]
  for r in records:
    missing = (r.get('missing_mechanism') or {}).get(key)
    lines.append(
        f"| {r['name']} | {_measured_text(r, key)} | {r['nfp_predicted'][key]} | "
        f"{r['binding_mechanism'][key] or 'no crossing'} | {r['nfp_resource'][key]} | "
        f"{r['n_idle'][key]} | {r['log2_error'][key]['principle']:+.2f} | "
        f"{_fmt(r['t1_roofline_fraction'])} | x{2 ** r['t_abs_log2_error']:.2f} | "
        f"{missing['name'] + ': ' + missing['text'] if missing else ''} |")
  return lines


def _score_table(summary: dict) -> list:
  lines = ['| predictor | within x1.5 | within x2 | median abs log2 error |',
           '|---|---|---|---|']
  for p, s in summary['scores'].items():
    lines.append(f"| {PREDICTOR_LABELS[p]} | {_pct(s['share_within_1_5x'])} | "
                 f"{_pct(s['share_within_2x'])} | {_fmt(s['median_abs_log2_error'])} |")
  return lines


RULES = (
    'Scoring (tau 0.1): each predictor\'s NFP against the measured one; the '
    'measured target is the NFP interval where the sweep reports one, else the '
    'point NFP, and a prediction inside it has error 0. Predictions beyond the '
    'swept grid count as its end. Censoring is symmetric: where the measured '
    'curve never crosses within the grid (NFP shown with +), a prediction at '
    'or beyond the grid end counts as right, for every predictor. Cases whose '
    'measured boundary is unresolved are listed and kept out of the shares. '
    'GPU anchors are scored by their own rules (anchors.md). T(N) err: median over N of the predicted latency\'s factor off '
    'the measured one. A miss larger than x2 names the mechanism the model '
    'lacks, by a fixed rule (validation.missing_mechanism).')


def markdown(records, summary, machine: dict, key: str = '0.1') -> str:
  """The report as markdown: the machine, the rules, scores per predictor and
  the per-case table of the CPU cases."""
  lines = ['# nfp_jax validation: the principle vs measured NFP (tau 0.1)', '',
           f"Machine: {machine.get('model')}, {machine.get('cpu_count')} cores, "
           f"ISA {' '.join(machine.get('isa_flags', [])) or '-'}.", '', RULES, '']
  for label, rows, s in (
      ('CPU (XLA:CPU measured, XLA:CPU predicted)', records, summary),):
    if not rows:
      continue
    above = s['share_measured_above_2']
    lines += [f'## {label}', '',
              f"{s['cases']} cases, {s['decided']} decided"
              f"{' (unresolved: ' + ', '.join(s['unresolved']) + ')' if s['unresolved'] else ''}"
              f"; {s['censored']} censored at the grid end; measured NFP > 2 in "
              f"{_pct(above)} of decided cases; the principle beats "
              + ', '.join(f"{PREDICTOR_LABELS[p]}: {'yes' if b else 'no'}"
                          for p, b in s['principle_beats'].items()) + '.', '']
    detail = s.get('unresolved_intervals') or []
    if detail:
      lines += [f"Unresolved cases (not scored) against their bootstrap NFP "
                f"interval: the principle's NFP lies inside it in "
                f"{sum(d['principle_inside'] for d in detail)} of {len(detail)}; "
                f"the whole interval lies above 2 in "
                f"{sum(d['above_2'] for d in detail)} of {len(detail)} ("
                + ', '.join(f"{d['name']} [{d['interval'][0]:g}, {d['interval'][1]:g}] "
                            f"vs {d['principle']:g}" for d in detail) + ').', '']
    lines += _score_table(s) + [''] + _case_table(rows, key) + ['']
  return '\n'.join(lines) + '\n'


def overview_points(records: Sequence[dict], key: str = '0.1') -> dict:
  """Predictor label -> (measured NFP, predicted NFP on the grid, censored)
  over the decided cases, for plots.validation_overview."""
  decided = [r for r in records if measured_target(r, key)['status'] != 'unresolved']
  out = {}
  for p in PREDICTORS:
    measured = [measured_target(r, key) for r in decided]
    out[PREDICTOR_LABELS[p]] = (
        [m['nfp'] for m in measured],
        [min(predicted_nfp(r, p, key), m['grid_end']) for r, m in zip(decided, measured)],
        [m['censored'] for m in measured])
  return out
