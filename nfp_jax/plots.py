"""Every plot of the project (the only module that imports matplotlib): R(N) =
T(N)/T(1) measured with CIs, predicted, boundaries marked; reports and
cross-framework overlays."""

import collections
import pathlib
import re

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.ticker  # pylint: disable=g-import-not-at-top,wrong-import-position

from nfp_jax import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_TAU_STYLE = {'0.05': ':', '0.1': '--', '0.2': '-.'}


def _title(summary: records.Summary) -> str:
  cfg = summary.config
  extra = ''
  if summary.module == 'moe' or (cfg.get('n_experts') and summary.module in
                                 ('layer', 'model')):
    extra = f" {cfg['moe_impl']} {cfg['routing']}"
  if summary.module in ('attention', 'layer', 'model'):
    extra += f" {cfg['mask']} L={cfg['kv_len']}"
  hw = (summary.hardware or {}).get('name', '')
  return (f"{summary.module} {summary.preset} x{cfg['scale']:g} "
          f"{cfg['dtype']}{extra} on {hw}\nconfig {summary.config_id}")


def ratio_plot(summary: records.Summary, path, tau_key: str = '0.1') -> None:
  """Writes a PNG of a sweep summary: R(N) with CI, tolerance band, NFP, N_idle,
  and the predicted curve when the summary has one."""
  positions = summary.positions
  ratio = summary.ratio
  lo = [r - c[0] for r, c in zip(ratio, summary.ratio_ci)]
  hi = [c[1] - r for r, c in zip(ratio, summary.ratio_ci)]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.errorbar(positions, ratio, yerr=[lo, hi], fmt='o-', capsize=3,
              label='measured R(N), 95% CI')
  if summary.t_pred_s:
    pred = summary.t_pred_s
    pred_positions = summary.get('pred_positions', positions)
    ax.plot(pred_positions, [t / pred[0] for t in pred], 's--', alpha=0.7,
            label='predicted T_pred(N)/T_pred(1)')
  for key, style in _TAU_STYLE.items():
    ax.axhline(1 + float(key), color='gray', ls=style, lw=1,
               label=f'1 + tau ({key})')
  nfp = summary.nfp.get(tau_key)
  if nfp is not None:
    status = (summary.get('nfp_status') or {}).get(tau_key)
    ax.axvline(nfp, color='green', lw=2, alpha=0.6,
               label=f'NFP({tau_key}) = {nfp}' + (f' ({status})' if status else ''))
  predicted = (summary.nfp_predicted or {}).get(tau_key)
  if predicted is not None:
    ax.axvline(predicted, color='purple', ls='--', lw=1.5,
               alpha=0.7, label=f'predicted NFP = {predicted}')
  n_idle = summary.n_idle.get(tau_key)
  if n_idle is not None:
    if n_idle <= positions[-1] * 2:
      ax.axvline(n_idle, color='red', lw=1.5, alpha=0.6,
                 label=f'N_idle({tau_key}) = {n_idle}')
    else:
      ax.annotate(f'N_idle({tau_key}) = {n_idle} ->', xy=(0.98, 0.05),
                  xycoords='axes fraction', ha='right', color='red')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('positions N per forward')
  ax.set_ylabel('R(N) = T(N) / T(1)')
  ax.set_title(_title(summary), fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc='upper left')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report_plots(rows: list[dict], folder) -> list[str]:
  """One R(N) plot per (backend, hardware) of report rows (nfp_jax.report);
  returns the file names written into `folder`."""
  folder = pathlib.Path(folder)
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


def overlay_plot(compare: dict, path, tau_key: str = '0.1') -> None:
  """Writes one PNG of a comparison: R(N) with its CI per framework (left), the
  tolerance band and each framework's NFP; T(N) in ms (right), since a ratio
  hides how fast T(1) is."""
  fig, (ax_ratio, ax_time) = plt.subplots(1, 2, figsize=(11, 4.5))
  colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
  failed = [name for name, fw in compare['frameworks'].items()
            if fw['status'] != 'ok']
  for i, (name, fw) in enumerate(compare['frameworks'].items()):
    if fw['status'] != 'ok':
      continue
    color = colors[i % len(colors)]
    ratio, ci = fw['ratio'], fw['ratio_ci']
    ax_ratio.errorbar(fw['positions'], ratio,
                      yerr=[[r - c[0] for r, c in zip(ratio, ci)],
                            [c[1] - r for r, c in zip(ratio, ci)]],
                      fmt='o-', capsize=3, color=color,
                      label=f'{name}: NFP({tau_key}) = {fw["nfp"][tau_key]}')
    ax_ratio.axvline(fw['nfp'][tau_key], color=color, ls=':', lw=1.5, alpha=0.7)
    ax_time.plot(fw['positions'], [t * 1e3 for t in fw['t_median_s']], 'o-',
                 color=color, label=f'{name}: T(1) = {fw["t1_s"] * 1e3:.3g} ms')
  ax_ratio.axhline(1 + float(tau_key), color='gray', ls='--', lw=1,
                   label=f'1 + tau ({tau_key})')
  cfg = compare['config']
  title = (f"{compare['module']} {compare['preset']} x{cfg['scale']:g} "
           f"{cfg['dtype']} on {compare['hardware'].get('name', '')}")
  for ax, ylabel in ((ax_ratio, 'R(N) = T(N) / T(1)'),
                     (ax_time, 'T(N) median, ms')):
    ax.set_xscale('log', base=2)
    ax.set_xlabel('positions N per forward')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='upper left')
  ax_time.set_yscale('log')
  for axis in (ax_time.yaxis.set_major_formatter, ax_time.yaxis.set_minor_formatter):
    axis(matplotlib.ticker.FormatStrFormatter('%g'))
  if failed:
    ax_ratio.annotate(f'failed (see compare.json): {", ".join(failed)}',
                      xy=(0.98, 0.03), xycoords='axes fraction', ha='right',
                      color='red', fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


_PREDICTOR_STYLE = {'principle': ('tab:blue', 'o'), 'resource': ('tab:orange', 's'),
                    'idle': ('tab:red', 'x'), 'always_1': ('tab:gray', 'v')}


def validation_overview(points: dict, path, tau_key: str = '0.1') -> None:
  """Predicted vs measured NFP on log axes, one colour per predictor.

  `points` maps a predictor label to (measured, predicted, censored) lists;
  a measured NFP censored at the grid end is drawn hollow. Each predictor's
  points are shifted a little along x (a few percent) so that equal values
  stay visible.
  """
  fig, ax = plt.subplots(figsize=(6, 5.5))
  values = [v for m, p, _ in points.values() for v in m + p] or [1]
  top = max(values) * 2
  for i, ((label, (measured, predicted, censored)), (color, marker)) in enumerate(
      zip(points.items(), _PREDICTOR_STYLE.values())):
    shift = 2 ** (0.05 * (i - (len(points) - 1) / 2))
    for hollow in (False, True):
      xs = [m * shift for m, c in zip(measured, censored) if c == hollow]
      ys = [p for p, c in zip(predicted, censored) if c == hollow]
      if not xs:
        continue
      filled = marker == 'x' or not hollow
      ax.scatter(xs, ys, marker=marker, color=color, alpha=0.8, zorder=3,
                 facecolors=color if filled else 'none',
                 label=label + (' (measured censored)' if hollow else ''))
  ax.plot([0.5, top], [0.5, top], color='gray', lw=1)
  for factor, alpha in ((2, 0.08), (1.5, 0.15)):
    ax.fill_between([0.5, top], [0.5 / factor, top / factor],
                    [0.5 * factor, top * factor], color='gray', alpha=alpha,
                    label=f'within x{factor:g}')
  ax.set_xscale('log', base=2)
  ax.set_yscale('log', base=2)
  ax.set_xlim(0.7, top)
  ax.set_ylim(0.7, top)
  ax.set_xlabel(f'measured NFP (tau {tau_key})')
  ax.set_ylabel('predicted NFP (read on the swept grid)')
  ax.legend(fontsize=7, loc='upper left')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


_PREDICTOR_COLOURS = {'principle': 'tab:blue', 'resource': 'tab:orange',
                      'idle': 'tab:red'}


def anchor_overview(curves: list, path, tau_key: str = '0.1') -> None:
  """Predicted vs measured NFP of the GPU anchors (anchors.evaluate's curve
  records) on log axes, one colour per predictor; a measured NFP that never
  crossed is drawn at the grid end with an open marker."""
  fig, ax = plt.subplots(figsize=(6, 5.5))
  measured = [c['nfp'][tau_key]['measured'] for c in curves]
  censored = [c['nfp'][tau_key]['measured_censored'] for c in curves]
  values = list(measured)
  for name, colour in _PREDICTOR_COLOURS.items():
    predicted = [c['nfp'][tau_key][name] for c in curves]
    values += predicted
    for flag, marker in ((False, 'o'), (True, 's')):
      xs = [m for m, c in zip(measured, censored) if c == flag]
      ys = [p for p, c in zip(predicted, censored) if c == flag]
      if xs:
        ax.scatter(xs, ys, s=10, alpha=0.45, marker=marker, color=colour,
                   facecolors='none' if flag else colour,
                   label=f"{name}{' (measured censored)' if flag else ''}")
  low, top = min(values) / 2, max(values) * 2
  ax.plot([low, top], [low, top], color='gray', lw=1)
  ax.fill_between([low, top], [low / 2, top / 2], [low * 2, top * 2],
                  color='gray', alpha=0.12, label='within x2')
  ax.set_xscale('log', base=2)
  ax.set_yscale('log', base=2)
  ax.set_xlabel(f'measured NFP (tau {tau_key})')
  ax.set_ylabel('predicted NFP')
  ax.set_title(f'GPU anchors: {len(curves)} curves', fontsize=9)
  ax.legend(fontsize=7, loc='upper left')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plan_plot(plans, path) -> None:
  """Writes one PNG of one or more plans (nfp_jax.plan.Plan): S(N) with its CI
  per curve (solid), R(N) on a second axis (dashed, same color), each curve's
  NFP (dotted vertical) and N* (star)."""
  fig, ax = plt.subplots(figsize=(8, 4.8))
  ax_ratio = ax.twinx()
  colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for i, p in enumerate(plans):
    color = colors[i % len(colors)]
    positions = [r['positions'] for r in p.rows]
    speedup = [r['speedup'] for r in p.rows]
    name = p.label if len(plans) > 1 else 'S(N)'
    if all(r['speedup_ci'] for r in p.rows):
      ax.errorbar(positions, speedup, capsize=3, fmt='o-', color=color,
                  yerr=[[s - r['speedup_ci'][0] for s, r in zip(speedup, p.rows)],
                        [r['speedup_ci'][1] - s for s, r in zip(speedup, p.rows)]],
                  label=f'{name}, 95% CI')
    else:
      ax.plot(positions, speedup, 'o-', color=color, label=name)
    ax_ratio.plot(positions, [r['ratio'] for r in p.rows], '--', color=color,
                  alpha=0.5, lw=1)
    ax.axvline(p.nfp, color=color, ls=':', lw=1.5, alpha=0.7)
    ax.plot([p.best['positions']], [p.best['speedup']], '*', ms=15, color=color,
            markeredgecolor='black',
            label=f"N* = {p.best['positions']} (S {p.best['speedup']:.2f}); "
                  f"NFP({p.tau:g}) = {p.nfp} (dotted)")
  ax.axhline(1, color='gray', lw=1)
  ax.set_xscale('log', base=2)
  ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter('%g'))
  ax.set_xlabel('positions N per forward')
  ax.set_ylabel('expected speedup S(N) = a(N) / (R(N) + (N-1) c)')
  ax_ratio.set_ylabel('R(N) = T(N) / T(1) (dashed)')
  ax.set_title(f'{plans[0].accept}, draft cost {plans[0].draft_cost:g}', fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc='best')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
