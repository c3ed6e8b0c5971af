r"""Measure T(N) and the near-free boundary of a block on the local JAX backend.

  python -m experiments.sweep --module moe
  python -m experiments.sweep --module dense --model llama3-8b --scale 0.5 \
      --positions 1,2,4,8,16,32 --dtype float32 --out results/dense-f32

Writes into --out: results.jsonl (a "point" record per N, a "summary" record per
configuration), summary.json and ratio.png (per configuration when the flags
form a grid). A folder that already holds finished configurations is resumed:
they are skipped, not measured again.
"""

import os
import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import hardware
from nfp_jax import plots
from nfp_jax import results
from nfp_jax import sweep

FLAGS = flags.FLAGS
common.define_block_flags()
common.define_sweep_flags()


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def print_table(summary: dict, tau: float) -> None:
  key = repr(float(tau))
  cfg = summary['config']
  hw = summary['hardware']
  print(f"\n{summary['module']} {summary['preset']} x{cfg['scale']:g} "
        f"{cfg['dtype']} on {hw['name']} (config {summary['config_id']})")
  print(f"{'N':>6} {'T ms':>10} {'R':>7}  {'95% CI':<17} free? (tau {tau:g})")
  for i, n in enumerate(summary['positions']):
    lo, hi = summary['ratio_ci'][i]
    print(f"{n:>6} {summary['t_median_s'][i] * 1e3:>10.3f} "
          f"{summary['ratio'][i]:>7.3f}  [{lo:.3f}, {hi:.3f}]  "
          f"{summary['verdicts'][key][i].replace('_', ' ')}")
  for n in summary['failed_positions']:
    print(f'{n:>6}   failed (see results.jsonl)')
  for k in summary['nfp']:
    low, high = summary['nfp_range'][k]
    nxt = summary['nfp_bracket'][k][1]
    print(f"NFP({k}) = {summary['nfp'][k]}  bracket [{summary['nfp'][k]}, "
          f"{nxt if nxt is not None else '>' + str(summary['positions'][-1])}]  "
          f"CI range [{low}, {high}]   N_idle({k}) = {summary['n_idle'][k]} "
          f"(x{summary['n_idle_overprediction'][k]:.1f})")
  print(f"T(1) = {summary['t_median_s'][0] * 1e3:.3f} ms is "
        f"{summary['t1_roofline_fraction']:.2f} of its bandwidth roofline "
        f"({summary['bytes_one'] / 1e6:.1f} MB at {hw['bandwidth'] / 1e9:.1f} GB/s)"
        f"; balance {hw['peak_flops'] / 1e9:.0f} GFLOP/s / "
        f"{hw['bandwidth'] / 1e9:.1f} GB/s = {hw['ridge']:.1f} FLOP/B")


def main(argv):
  if len(argv) > 1:
    raise common.UsageError(f'Unexpected argument {argv[1]!r}; flags only.')
  positions = common.parse_positions(FLAGS.positions)
  tau = common.parse_tolerance(FLAGS.tolerance)
  if FLAGS.repeats < 3:
    raise common.UsageError(f'--repeats must be at least 3, got {FLAGS.repeats}.')
  device = common.device(FLAGS.backend)
  configs = common.block_configs(device.platform)
  out = common.output_folder(FLAGS.out, '-'.join(FLAGS.module))
  log = results.ResultLog.open(out)
  done = log.summaries()
  print(f'measuring on {device.platform} ({device.device_kind}); '
        f'{len(configs)} configuration(s); results in {out}', file=sys.stderr)
  summaries = []
  for i, cfg in enumerate(configs):
    config_id = cfg.config_id(positions)
    if config_id in done:
      _progress(f'[{i + 1}/{len(configs)}] {config_id} already finished; skipped')
      summaries.append(done[config_id])
      continue
    _progress(f'[{i + 1}/{len(configs)}] {cfg.module} {cfg.preset} '
              f'x{cfg.scale:g} {cfg.dtype} (config {config_id})')
    balance = hardware.local_balance(cfg.dtype, common.balance_cache(), device)
    result = sweep.run(cfg, positions, rounds=FLAGS.repeats, warmup=FLAGS.warmup,
                       balance=balance, taus=common.taus(tau), device=device,
                       progress=_progress)
    summary = dict(result.summary, provenance=results.provenance(
        seed=cfg.seed, xla_flags=os.environ.get('XLA_FLAGS', ''), device=device))
    log.append(result.points + [summary])
    summaries.append(summary)
    print_table(summary, tau)
    name = '' if len(configs) == 1 else f'-{config_id}'
    results.write_json(out / f'summary{name}.json', summary)
    plots.ratio_plot(summary, out / f'ratio{name}.png', repr(float(tau)))
  if len(configs) > 1:
    results.write_json(out / 'summary.json', {'kind': 'grid', 'summaries': summaries})
  print(f'\nwrote {out}/results.jsonl, summary.json and plot(s)')


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run(main)
