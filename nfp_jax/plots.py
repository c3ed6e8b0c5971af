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
