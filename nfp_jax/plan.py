"""From a ratio curve R(N) to a decoding choice: how many positions N to verify
(or denoise) per forward, and the speedup over plain decoding to expect.

A forward of N positions costs R(N) = T(N)/T(1) plain forwards and commits
a(N) tokens on average (the acceptance model); drafting N - 1 tokens costs
(N - 1) * c more, c relative to T(1) of the verified model (0 for
self-speculation, Jacobi/lookahead and diffusion). The expected speedup is

  S(N) = a(N) / (R(N) + (N - 1) * c).

Acceptance models (`parse_accept`):
  chain:<alpha>  a chain of N - 1 drafted tokens, each accepted with
                 probability alpha independently: a(N) = (1 - alpha^N)/(1 - alpha);
  table:<csv>    measured tokens per forward, a CSV `positions,tokens` (trees,
                 Jacobi/lookahead, diffusion blocks).

S is decreasing in R, so the 95% CI of R(N) maps to the CI of S(N) endpoint by
endpoint (the upper end of R gives the lower end of S). A plan reports N*, the
swept N of largest S; the best N inside the near-free range (N <= NFP_tau of the
same curve); and `near_free_share` = S(best near-free N) / S(N*), the share of
the best speedup reached without leaving the near-free range.

Curves come from a sweep result folder (summary.json, or the summary records
of results.jsonl), a compare result folder (one curve per framework) or a
predict JSON (`read_curves`).
"""

import csv
import dataclasses
import json
import math
import pathlib
from typing import Sequence

from nfp_jax import boundary
from nfp_jax import errors
from nfp_jax import results


@dataclasses.dataclass(frozen=True)
class Acceptance:
  """An acceptance model: expected tokens committed per forward of N positions."""
  spec: str  # as given: chain:<alpha> or table:<file>
  alpha: float | None = None  # chain
  table: dict | None = None  # table: N -> tokens

  def tokens(self, positions: Sequence[int], label: str = 'the curve') -> list:
    """a(N) at every N; errors.ConfigError when a table lacks one of them."""
    if self.table is None:
      return [chain_tokens(self.alpha, n) for n in positions]
    missing = [n for n in positions if n not in self.table]
    if missing:
      raise errors.ConfigError(
          f'The acceptance table {self.spec[len("table:"):]} has no row for N = '
          f'{", ".join(map(str, missing))} of {label}; give tokens for every '
          'swept N.')
    return [self.table[n] for n in positions]


def chain_tokens(alpha: float, positions: int) -> float:
  """a(N) = 1 + alpha + ... + alpha^(N-1) = (1 - alpha^N) / (1 - alpha)."""
  return (1 - alpha ** positions) / (1 - alpha)


def read_table(path) -> dict:
  """{N: tokens} of a CSV `positions,tokens` (header optional); errors.ConfigError
  unless N strictly increases from 1, a(1) = 1 and 0 < a(N) <= N."""
  try:
    with open(path, newline='') as f:
      rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
  except OSError as e:
    raise errors.ConfigError(f'Cannot read the acceptance table {path}: '
                             f'{e.strerror or e}.') from None
  if rows and [c.strip() for c in rows[0]] == ['positions', 'tokens']:
    rows = rows[1:]
  table = {}
  for row in rows:
    try:
      if len(row) != 2:
        raise ValueError
      n, tokens = int(row[0]), float(row[1])
    except ValueError:
      raise errors.ConfigError(f'The acceptance table {path} has a row that is not '
                               f'"positions,tokens" numbers: {",".join(row)!r}.'
                               ) from None
    if table and n <= max(table):
      raise errors.ConfigError(f'The acceptance table {path} must have strictly '
                               f'increasing positions; {n} follows {max(table)}.')
    if not (math.isfinite(tokens) and 0 < tokens <= n):
      raise errors.ConfigError(f'The acceptance table {path} gives {tokens:g} tokens '
                               f'at N = {n}; a forward of N positions commits more '
                               'than 0 and at most N tokens.')
    table[n] = tokens
  if 1 not in table:
    raise errors.ConfigError(f'The acceptance table {path} has no row for N = 1 '
                             '(plain decoding, 1 token per forward).')
  if table[1] != 1:
    raise errors.ConfigError(f'The acceptance table {path} gives {table[1]:g} tokens '
                             'at N = 1; plain decoding commits exactly 1.')
  return table


def parse_accept(spec: str) -> Acceptance:
  """The Acceptance of `chain:<alpha>` (alpha in [0, 1)) or `table:<csv>`."""
  kind, _, value = (spec or '').partition(':')
  if kind == 'chain':
    try:
      alpha = float(value)
    except ValueError:
      alpha = math.nan
    if not 0 <= alpha < 1:
      raise errors.ConfigError(f'The acceptance rate of {spec!r} must be a number '
                               'in [0, 1).')
    return Acceptance(spec=spec, alpha=alpha)
  if kind == 'table' and value:
    return Acceptance(spec=spec, table=read_table(value))
  raise errors.ConfigError(f'Unknown acceptance model {spec!r}; use chain:<alpha> '
                           'or table:<csv of positions,tokens>.')


def check_draft_cost(draft_cost: float) -> float:
  if not (math.isfinite(draft_cost) and draft_cost >= 0):
    raise errors.ConfigError(f'The draft cost must be a number >= 0 (relative to '
                             f'T(1)), got {draft_cost}.')
  return float(draft_cost)


def speedup(tokens: float, ratio: float, positions: int,
            draft_cost: float = 0.0) -> float:
  """S(N) = a(N) / (R(N) + (N - 1) c)."""
  return tokens / (ratio + (positions - 1) * draft_cost)


@dataclasses.dataclass(frozen=True)
class Curve:
  """R(N) of one block on one backend, framework or target."""
  label: str
  source: str  # sweep | compare | predict
  positions: list
  ratio: list
  ratio_ci: list | None  # per N [low, high]; None for a prediction


def curve_from_record(record: dict, label: str = '') -> Curve:
  """The curve of a sweep or compare summary (measured, with CIs) or of a
  predict JSON (predicted T(N), no CI); errors.ConfigError for anything else."""
  if record.get('t_pred_s') and 'ratio' not in record and 'target' in record:
    t_pred = record['t_pred_s']
    return Curve(label or f"predicted on {record['target']}", 'predict',
                 list(record['positions']), [t / t_pred[0] for t in t_pred], None)
  if record.get('ratio') and record.get('positions'):
    if 'framework' in record:
      source = 'compare'
    else:
      source = 'sweep'
    return Curve(label or record.get('config_id', source), source,
                 list(record['positions']), list(record['ratio']),
                 [list(c) if c else None for c in record['ratio_ci']]
                 if record.get('ratio_ci') else None)
  raise errors.ConfigError(f'{label or "The record"} holds no ratio curve (not a '
                           'finished sweep, compare or predict result).')


def _describe(record: dict) -> str:
  """module preset xscale dtype, from a summary or a prediction."""
  cfg = record.get('config') or {}
  scale = f" x{cfg['scale']:g}" if 'scale' in cfg else ''
  return (f"{record.get('module') or cfg.get('module', '?')} "
          f"{record.get('preset') or cfg.get('preset', '?')}{scale} "
          f"{cfg.get('dtype', '')}").strip()


def _ok(record: dict) -> bool:
  return record.get('status', 'ok') == 'ok'


def _curves_of_json(doc, name: str) -> list:
  """The curves of a summary.json, compare.json or predict JSON document."""
  if not isinstance(doc, dict):
    return []
  kind = doc.get('kind')
  if kind == 'grid':  # a sweep grid (summaries) or a compare grid (comparisons)
    return [c for d in doc.get('summaries', []) + doc.get('comparisons', [])
            for c in _curves_of_json(d, f"{name} {d.get('config_id', '')}".strip())]
  if kind == 'compare':
    return [curve_from_record(dict(fw, framework=fw_name),
                              f'{name} {fw_name} ({_describe(doc)})')
            for fw_name, fw in doc.get('frameworks', {}).items() if _ok(fw)]
  if kind == 'summary' and _ok(doc) and doc.get('ratio'):
    label = f"{name} {doc['framework']}" if 'framework' in doc else name
    hw = (doc.get('hardware') or {}).get('name', '')
    return [curve_from_record(doc, f"{label} ({_describe(doc)}"
                                   f"{' on ' + hw if hw else ''})")]
  if doc.get('t_pred_s') and doc.get('target'):
    return [curve_from_record(doc, f"{name} ({_describe(doc)} on {doc['target']})")]
  return []


def _read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def read_curves(source) -> list:
  """Every curve in a result: a sweep folder (summary.json, else the finished
  summaries of results.jsonl), a compare folder (compare.json: one curve per
  framework that ran), or a JSON file (predict output, summary.json,
  compare.json). errors.ConfigError (one sentence) if it holds none."""
  path = pathlib.Path(source)
  name = path.name or str(path)
  curves = []
  if path.is_dir():
    for file_name in ('summary.json', 'compare.json'):
      if (path / file_name).is_file():
        curves = _curves_of_json(_read_json(path / file_name), name)
        if curves:
          break
    if not curves:  # killed before summary.json was written
      for record in results.read_jsonl(path / 'results.jsonl'):
        if record.get('kind') == 'summary':
          label = (f"{name} {record['framework']}" if 'framework' in record
                   else f"{name} {record.get('config_id', '')}".strip())
          curves += _curves_of_json(record, label)
  elif path.is_file():
    curves = _curves_of_json(_read_json(path), path.stem)
  if not curves:
    raise errors.ConfigError(
        f'{source} is not a result: expected a sweep or compare folder with a '
        'finished configuration (summary.json, compare.json or results.jsonl) or '
        'a predict JSON.')
  return curves


@dataclasses.dataclass(frozen=True)
class Plan:
  """The choice of N on one curve; to_dict() is plan.json's object."""
  label: str
  source: str
  accept: str
  draft_cost: float
  tau: float
  nfp: int  # near-free boundary of this curve at tau (first crossing)
  rows: list  # per N: positions, ratio, ratio_ci, tokens, speedup, speedup_ci
  best: dict  # positions, speedup (N*)
  best_near_free: dict  # positions, speedup (best N <= nfp)
  near_free_share: float  # best_near_free speedup / best speedup

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _best(rows: list) -> dict:
  row = max(rows, key=lambda r: r['speedup'])  # the smallest N on ties
  return dict(positions=row['positions'], speedup=row['speedup'])


def plan(curve: Curve, acceptance: Acceptance, draft_cost: float = 0.0,
         tau: float = 0.1) -> Plan:
  """S(N) with its CI at every swept N, N*, and the best near-free N."""
  draft_cost = check_draft_cost(draft_cost)
  tokens = acceptance.tokens(curve.positions, curve.label)
  rows = []
  for i, (n, ratio, a) in enumerate(zip(curve.positions, curve.ratio, tokens)):
    ci = curve.ratio_ci[i] if curve.ratio_ci else None
    if ci is not None and None in ci:
      ci = None
    rows.append(dict(
        positions=n, ratio=ratio, ratio_ci=ci, tokens=a,
        speedup=speedup(a, ratio, n, draft_cost),
        # S decreases in R: R's upper end gives S's lower end.
        speedup_ci=None if ci is None else [speedup(a, ci[1], n, draft_cost),
                                            speedup(a, ci[0], n, draft_cost)]))
  nfp = boundary.first_crossing(curve.positions, curve.ratio, tau)
  best = _best(rows)
  best_near_free = _best([r for r in rows if r['positions'] <= nfp])
  return Plan(label=curve.label, source=curve.source, accept=acceptance.spec,
              draft_cost=draft_cost, tau=tau, nfp=nfp, rows=rows, best=best,
              best_near_free=best_near_free,
              near_free_share=best_near_free['speedup'] / best['speedup'])


def document(plans: Sequence[Plan]) -> dict:
  """plan.json: one plan's object, or for several curves
  {accept, draft_cost, plans: [one plan object per curve]} (read either with
  `doc.get('plans', [doc])`)."""
  if len(plans) == 1:
    return plans[0].to_dict()
  return dict(accept=plans[0].accept, draft_cost=plans[0].draft_cost,
              plans=[p.to_dict() for p in plans])


def _ci_text(ci) -> str:
  return f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else ''


def summary_line(p: Plan) -> str:
  """One line: N*, its speedup (CI), and the best near-free N."""
  best_ci = next(r['speedup_ci'] for r in p.rows
                 if r['positions'] == p.best['positions'])
  return (f"plan ({p.accept}, draft cost {p.draft_cost:g}): N* = "
          f"{p.best['positions']}, speedup {p.best['speedup']:.2f}"
          f"{' ' + _ci_text(best_ci) if best_ci else ''}; best near-free N = "
          f"{p.best_near_free['positions']} (NFP({p.tau:g}) = {p.nfp}), speedup "
          f"{p.best_near_free['speedup']:.2f} ({p.near_free_share:.0%} of S(N*))")


def table_lines(p: Plan) -> list:
  """The per-N table of one plan, as printed lines."""
  lines = [f'\n{p.label} ({p.source})',
           f"{'N':>6} {'R':>7} {'R 95% CI':<16} {'a(N)':>7} {'S(N)':>7} S 95% CI"]
  for r in p.rows:
    lines.append(f"{r['positions']:>6} {r['ratio']:>7.3f} "
                 f"{_ci_text(r['ratio_ci']):<16} {r['tokens']:>7.3f} "
                 f"{r['speedup']:>7.3f} {_ci_text(r['speedup_ci'])}")
  lines.append(summary_line(p))
  return lines


def overview_lines(plans: Sequence[Plan]) -> list:
  """One table of several plans: per curve NFP, N*, S(N*), the best near-free
  N and its S."""
  width = max(len(p.label) for p in plans)
  lines = [f"{'curve':<{width}} {'NFP':>5} {'N*':>5} {'S(N*)':>7} "
           f"{'N_nf':>5} {'S(N_nf)':>8} {'share':>6}"]
  for p in plans:
    lines.append(f"{p.label:<{width}} {p.nfp:>5} {p.best['positions']:>5} "
                 f"{p.best['speedup']:>7.3f} {p.best_near_free['positions']:>5} "
                 f"{p.best_near_free['speedup']:>8.3f} {p.near_free_share:>6.0%}")
  return lines
