"""One report over result folders (machines, shards, frameworks): a row per
configuration and machine, as markdown and as JSON for scripts."""

import dataclasses
from typing import Sequence

from nfp_jax import boundary
from nfp_jax import records

TAU_KEYS = tuple(boundary.tau_key(t) for t in boundary.TAUS)


@dataclasses.dataclass(frozen=True)
class Sourced:
  """A summary and the folder it was read from."""
  summary: records.Summary
  source: str


def load(folders: Sequence[str]) -> list[Sourced]:
  """Every summary of every folder, a record reached through two paths once;
  errors.ConfigError for a folder that holds no results."""
  unique = {}
  for folder in folders:
    for s in records.load_summaries(folder):
      prov = s.provenance or {}
      key = (s.config_id, s.framework_name, prov.get('host'), prov.get('time'))
      unique.setdefault(key, Sourced(s, str(folder)))
  return list(unique.values())


def _shapes(cfg: dict, module: str) -> str:
  parts = [f"d={cfg['d_model']}"]
  if module in ('dense', 'moe', 'layer', 'model', 'linear'):
    parts.append(f"ff={cfg['d_ff']}")
  if cfg.get('n_experts') and module in ('moe', 'layer', 'model'):
    parts.append(f"E{cfg['n_experts']}k{cfg['top_k']}"
                 + (f"+{cfg['n_shared_experts']}s" if cfg['n_shared_experts'] else '')
                 + f" {cfg['moe_impl']} {cfg['routing']}")
  if module in ('attention', 'layer', 'model'):
    parts.append(f"h{cfg['n_heads']}/{cfg['n_kv_heads']}x{cfg['head_dim']} "
                 f"L={cfg['kv_len']} {cfg['mask']} {cfg['attn_impl']}")
  if module == 'model':
    parts.append(f"{cfg['n_layers']} layers")
  return ', '.join(parts) + f", {cfg['dtype']}"


def row(item: Sourced) -> dict:
  s = item.summary
  prov = s.provenance or {}
  ok = s.ok
  return dict(
      config_id=s.config_id, status=s.status, backend=s.backend,
      hardware=s.hardware_name, framework=s.framework_name, module=s.module,
      preset=s.preset, scale=s.config.get('scale'),
      shapes=_shapes(s.config, s.module) if s.config else '',
      nfp={t: s.nfp.get(t) for t in TAU_KEYS} if ok else {},
      nfp_status={t: (s.get('nfp_status') or {}).get(t) for t in TAU_KEYS}
      if ok else {},
      n_idle=s.n_idle.get('0.1') if ok else None,
      nfp_predicted=(s.nfp_predicted or {}).get('0.1'),
      t1_ms=s.t1_s * 1e3 if ok else None,
      t1_roofline_fraction=s.t1_roofline_fraction,
      positions=s.positions, ratio=s.ratio,
      time=prov.get('time', ''), source=item.source)


def rows(items: Sequence[Sourced]) -> list[dict]:
  return sorted((row(i) for i in items),
                key=lambda r: (r['backend'], r['hardware'], r['module'],
                               r['preset'] or '', r['framework'], r['config_id']))


def _cell(value, fmt='{}'):
  return '-' if value is None else fmt.format(value)


def _nfp_cell(r: dict, tau: str) -> str:
  text = _cell(r['nfp'].get(tau))
  return text + '?' if r['nfp_status'].get(tau) == 'unresolved' else text


def markdown(table: list[dict]) -> str:
  lines = ['# nfp_jax report', '',
           f'{len(table)} configuration(s) from '
           f'{len({r["source"] for r in table})} folder(s). '
           'An NFP marked `?` is unresolved (see its summary).', '',
           '| backend | hardware | framework | module | preset | shapes | '
           'NFP 0.05 / 0.1 / 0.2 | N_idle(0.1) | NFP_pred(0.1) | T(1) ms | '
           'T(1) roofline | config |',
           '|' + '---|' * 12]
  for r in table:
    nfp = (' / '.join(_nfp_cell(r, t) for t in TAU_KEYS) if r['nfp']
           else r['status'])
    lines.append(
        f"| {r['backend']} | {r['hardware']} | {r['framework']} | {r['module']} | "
        f"{r['preset']} x{_cell(r['scale'], '{:g}')} | {r['shapes']} | {nfp} | "
        f"{_cell(r['n_idle'])} | {_cell(r['nfp_predicted'])} | "
        f"{_cell(r['t1_ms'], '{:.3f}')} | "
        f"{_cell(r['t1_roofline_fraction'], '{:.2f}')} | {r['config_id']} |")
  return '\n'.join(lines) + '\n'
