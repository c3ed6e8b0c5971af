"""Plots of R(N) = T(N)/T(1): measured with CIs, predicted, boundaries marked."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

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
