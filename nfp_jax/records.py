"""The records of results.jsonl, typed: one `Point` per swept N and one
`Summary` per configuration (a sweep's, or one framework's in a comparison).

The JSONL on disk keeps the keys it always had: `from_json` reads a record
written by any version of this tool (keys it does not name are kept in
`extra`, untouched) and `to_json` writes the same keys back. Readers (report,
plots, compare, plan) use the attributes, not string keys.
"""

import dataclasses
import pathlib
from typing import Any, Mapping

from nfp_jax import errors
from nfp_jax import results


def _split(cls, record: Mapping) -> dict:
  """The keyword arguments of `cls` from a JSON record: named fields as they
  are, every other key (except 'kind') in `extra`."""
  names = {f.name for f in dataclasses.fields(cls)} - {'extra'}
  kwargs = {k: v for k, v in record.items() if k in names}
  kwargs['extra'] = {k: v for k, v in record.items()
                     if k not in names and k != 'kind'}
  return kwargs


def _join(record, kind: str) -> dict:
  """The JSON record: kind, the named fields that are set, then `extra`."""
  out = {'kind': kind}
  for f in dataclasses.fields(record):
    value = getattr(record, f.name)
    if f.name != 'extra' and value is not None:
      out[f.name] = value
  out.update(record.extra)
  return out


class _Record:
  """from_json / to_json of a record dataclass whose kind is KIND."""
  KIND = ''

  @classmethod
  def from_json(cls, record: Mapping):
    return cls(**_split(cls, record))

  def to_json(self) -> dict:
    return _join(self, self.KIND)


@dataclasses.dataclass(frozen=True)
class Point(_Record):
  """T(N) at one swept N: its samples, median, R(N) with CI and verdict per
  tau; or status 'failed' with the error."""
  config_id: str
  positions: int
  status: str = 'ok'
  framework: str | None = None  # set in comparisons only
  t_median_s: float | None = None
  ratio: float | None = None
  ratio_ci: list | None = None
  verdict: dict | None = None  # tau_key -> verdict
  samples_s: list | None = None
  error: str | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  KIND = 'point'


@dataclasses.dataclass(frozen=True)
class Summary(_Record):
  """One configuration's curve and boundary, as `sweep` and `compare` write it.

  Lists run over `positions` (the N that ran); maps are keyed by
  boundary.tau_key. A failed configuration has status 'failed', `error`, and
  none of the curve fields.
  """
  config_id: str
  module: str
  preset: str | None = None
  config: dict = dataclasses.field(default_factory=dict)
  status: str = 'ok'
  error: str | None = None
  framework: str | None = None  # set in comparisons only
  positions: list = dataclasses.field(default_factory=list)
  failed_positions: list | None = None
  t_median_s: list | None = None
  ratio: list | None = None
  ratio_ci: list | None = None
  verdicts: dict | None = None
  nfp: dict | None = None
  nfp_bracket: dict | None = None
  nfp_range: dict | None = None
  n_idle: dict | None = None
  n_idle_overprediction: dict | None = None
  t1_roofline_fraction: float | None = None
  bytes_one: float | None = None
  flops_one: float | None = None
  hardware: dict | None = None  # the Balance the curve was judged with
  provenance: dict | None = None
  # The principle's prediction, when the sweep made one.
  t_pred_s: list | None = None
  nfp_predicted: dict | None = None
  nfp_resource: dict | None = None
  binding_mechanism: dict | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  KIND = 'summary'

  @property
  def ok(self) -> bool:
    return self.status == 'ok'

  @property
  def t1_s(self) -> float | None:
    return self.t_median_s[0] if self.t_median_s else None

  @property
  def framework_name(self) -> str:
    return self.framework or 'jax'

  @property
  def backend(self) -> str:
    return (self.provenance or {}).get('backend', '?')

  @property
  def hardware_name(self) -> str:
    prov = self.provenance or {}
    return f"{prov.get('device_kind', '?')} @ {prov.get('host', '?')}"

  def get(self, key: str, default: Any = None) -> Any:
    """A field by its JSON key, named or not (for keys added by newer runs)."""
    names = {f.name for f in dataclasses.fields(self)} - {'extra'}
    if key in names:
      value = getattr(self, key)
      return default if value is None else value
    return self.extra.get(key, default)


def parse(record: Mapping) -> Point | Summary:
  """The typed record of one JSONL line."""
  kind = record.get('kind')
  types = {Point.KIND: Point, Summary.KIND: Summary}
  if kind not in types:
    raise ValueError(f'Unknown record kind {kind!r}.')
  try:
    return types[kind].from_json(record)
  except TypeError as e:  # a required key is missing
    raise ValueError(f'A {kind} record without its keys: {e}') from None


def read(path, kinds=(Point.KIND, Summary.KIND)) -> list:
  """The typed records of a results.jsonl of the given kinds (others skipped);
  ValueError for a record that lacks the keys of its kind."""
  return [parse(r) for r in results.read_jsonl(path) if r.get('kind') in kinds]


def load_summaries(folder) -> list[Summary]:
  """The summaries of a results folder; errors.ConfigError if it is none."""
  path = pathlib.Path(folder)
  log = path / 'results.jsonl'
  if not path.is_dir() or not log.is_file():
    raise errors.ConfigError(f'{folder} is not a results folder (no results.jsonl).')
  try:
    summaries = read(log, kinds=(Summary.KIND,))
  except ValueError as e:
    raise errors.ConfigError(f'{folder} is not a results folder ({e}).') from None
  if not summaries:
    raise errors.ConfigError(f'{folder} is not a results folder (its results.jsonl '
                             'has no summary record).')
  return summaries
