r"""Merge result folders (machines, shards, frameworks) into one report.

  python -m experiments.report results/shard0 results/shard1 --out results/report

Reads every `summary` record of each folder's results.jsonl (sweeps and
cross-framework comparisons alike) and writes REPORT_DIR/report.md (one row per
configuration and machine), report.json (the same rows for scripts) and one plot
of R(N) per backend and hardware. A folder that holds no results is refused.
"""

import collections
import pathlib
import re

from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import results  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('out', None, 'Report folder (required).')

TAUS = ('0.05', '0.1', '0.2')


def load(folder: str) -> list[dict]:
  """The finished summaries of a results folder; UsageError if it is none."""
  path = pathlib.Path(folder)
  log = path / 'results.jsonl'
  if not path.is_dir() or not log.is_file():
    raise common.UsageError(f'{folder} is not a results folder (no results.jsonl).')
  summaries = [r for r in results.read_jsonl(log) if r.get('kind') == 'summary']
  if not summaries:
    raise common.UsageError(f'{folder} is not a results folder (its results.jsonl '
                            'has no summary record).')
  return [dict(s, source=str(path)) for s in summaries]


def _shapes(cfg: dict, module: str) -> str:
  parts = [f"d={cfg['d_model']}"]
  if module in ('linear', 'dense', 'moe', 'layer', 'model'):
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


def row(summary: dict) -> dict:
  prov = summary.get('provenance', {})
  cfg = summary.get('config', {})
  ok = summary.get('status', 'ok') == 'ok'
  return dict(
      config_id=summary['config_id'], status=summary.get('status', 'ok'),
      backend=prov.get('backend', '?'),
      hardware=f"{prov.get('device_kind', '?')} @ {prov.get('host', '?')}",
      framework=summary.get('framework', 'jax'), module=summary.get('module'),
      preset=summary.get('preset'), scale=cfg.get('scale'),
      shapes=_shapes(cfg, summary.get('module')) if cfg else '',
      nfp={t: summary['nfp'].get(t) for t in TAUS} if ok else {},
      n_idle=summary.get('n_idle', {}).get('0.1') if ok else None,
      nfp_predicted=(summary.get('nfp_predicted') or {}).get('0.1'),
      t1_ms=summary['t_median_s'][0] * 1e3 if ok else None,
      t1_roofline_fraction=summary.get('t1_roofline_fraction'),
      positions=summary.get('positions'), ratio=summary.get('ratio'),
      time=prov.get('time', ''), source=summary['source'])


def _cell(value, fmt='{}'):
  return '-' if value is None else fmt.format(value)


def markdown(rows: list[dict]) -> str:
  lines = ['# nfp_jax report', '',
           f'{len(rows)} configuration(s) from '
           f'{len({r["source"] for r in rows})} folder(s).', '',
           '| backend | hardware | framework | module | preset | shapes | '
           'NFP 0.05 / 0.1 / 0.2 | N_idle(0.1) | NFP_pred(0.1) | T(1) ms | '
           'T(1) roofline | config |',
           '|' + '---|' * 12]
  for r in rows:
    nfp = ' / '.join(_cell(r['nfp'].get(t)) for t in TAUS) if r['nfp'] else r['status']
    lines.append(
        f"| {r['backend']} | {r['hardware']} | {r['framework']} | {r['module']} | "
        f"{r['preset']} x{_cell(r['scale'], '{:g}')} | {r['shapes']} | {nfp} | "
        f"{_cell(r['n_idle'])} | {_cell(r['nfp_predicted'])} | "
        f"{_cell(r['t1_ms'], '{:.3f}')} | "
        f"{_cell(r['t1_roofline_fraction'], '{:.2f}')} | {r['config_id']} |")
  return '\n'.join(lines) + '\n'


def plot_groups(rows: list[dict], folder: pathlib.Path) -> list[str]:
  """One R(N) plot per (backend, hardware)."""
  groups = collections.defaultdict(list)
  for r in rows:
    if r['ratio']:
      groups[(r['backend'], r['hardware'])].append(r)
  names = []
  for (backend, hardware), members in sorted(groups.items()):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in members:
      ax.plot(r['positions'], r['ratio'], 'o-', ms=3,
              label=f"{r['framework']} {r['module']} {r['preset']} ({r['config_id']})")
    ax.axhline(1.1, color='gray', ls='--', lw=1, label='1 + tau (0.1)')
    ax.set_xscale('log', base=2)
    ax.set_xlabel('positions N per forward')
    ax.set_ylabel('R(N) = T(N) / T(1)')
    ax.set_title(f'{backend}: {hardware}', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    name = 'ratio-' + re.sub(r'[^A-Za-z0-9.-]+', '_', f'{backend}-{hardware}') + '.png'
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    names.append(name)
  return names


def main(argv):
  folders = argv[1:]
  if not folders:
    raise common.UsageError('Give at least one results folder to merge.')
  if not FLAGS.out:
    raise common.UsageError('--out (the report folder) is required.')
  summaries = [s for folder in folders for s in load(folder)]
  out = common.output_folder(FLAGS.out, 'report')
  unique = {}
  for s in summaries:  # the same record reached through two paths counts once
    key = (s['config_id'], s.get('framework', 'jax'),
           s.get('provenance', {}).get('host'), s.get('provenance', {}).get('time'))
    unique.setdefault(key, s)
  rows = sorted((row(s) for s in unique.values()),
                key=lambda r: (r['backend'], r['hardware'], r['module'],
                               r['preset'] or '', r['framework'], r['config_id']))
  (out / 'report.md').write_text(markdown(rows))
  results.write_json(out / 'report.json', {'rows': rows, 'folders': folders})
  plots = plot_groups(rows, out)
  print(f'{len(rows)} configuration(s) from {len(folders)} folder(s) -> '
        f'{out}/report.md, report.json, {len(plots)} plot(s)')


if __name__ == '__main__':
  common.run(main)
