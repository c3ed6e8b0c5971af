"""Plots of R(N) = T(N)/T(1): measured with CIs, predicted, boundaries marked."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.ticker  # pylint: disable=g-import-not-at-top,wrong-import-position

_TAU_STYLE = {'0.05': ':', '0.1': '--', '0.2': '-.'}


def _title(summary) -> str:
  cfg = summary['config']
  extra = ''
  if summary['module'] == 'moe' or (cfg.get('n_experts') and summary['module'] in
                                    ('layer', 'model')):
    extra = f" {cfg['moe_impl']} {cfg['routing']}"
  if summary['module'] in ('attention', 'layer', 'model'):
    extra += f" {cfg['mask']} L={cfg['kv_len']}"
  hw = summary.get('hardware', {}).get('name', '')
  return (f"{summary['module']} {summary['preset']} x{cfg['scale']:g} "
          f"{cfg['dtype']}{extra} on {hw}\nconfig {summary['config_id']}")


def ratio_plot(summary: dict, path, tau_key: str = '0.1') -> None:
  """Writes a PNG of a sweep summary: R(N) with CI, tolerance band, NFP, N_idle,
  and the predicted curve when the summary has `t_pred_s`."""
  positions = summary['positions']
  ratio = summary['ratio']
  lo = [r - c[0] for r, c in zip(ratio, summary['ratio_ci'])]
  hi = [c[1] - r for r, c in zip(ratio, summary['ratio_ci'])]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.errorbar(positions, ratio, yerr=[lo, hi], fmt='o-', capsize=3,
              label='measured R(N), 95% CI')
  if summary.get('t_pred_s'):
    pred = summary['t_pred_s']
    pred_positions = summary.get('pred_positions', positions)
    ax.plot(pred_positions, [t / pred[0] for t in pred], 's--', alpha=0.7,
            label='predicted T_pred(N)/T_pred(1)')
  for key, style in _TAU_STYLE.items():
    ax.axhline(1 + float(key), color='gray', ls=style, lw=1,
               label=f'1 + tau ({key})')
  nfp = summary['nfp'].get(tau_key)
  if nfp is not None:
    ax.axvline(nfp, color='green', lw=2, alpha=0.6,
               label=f'NFP({tau_key}) = {nfp}')
  if summary.get('nfp_predicted', {}).get(tau_key) is not None:
    ax.axvline(summary['nfp_predicted'][tau_key], color='purple', ls='--', lw=1.5,
               alpha=0.7, label=f"predicted NFP = {summary['nfp_predicted'][tau_key]}")
  n_idle = summary['n_idle'].get(tau_key)
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
