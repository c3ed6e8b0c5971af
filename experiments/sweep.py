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
from nfp_jax import boundary
from nfp_jax import hardware
from nfp_jax import plots
from nfp_jax import predict
from nfp_jax import probe as probe_lib
from nfp_jax import records
from nfp_jax import results
from nfp_jax import sweep
from nfp_jax import targets

FLAGS = flags.FLAGS
common.define_block_flags()
common.define_sweep_flags()
common.define_plan_flags()
flags.DEFINE_bool('predict', True, 'Also predict T(N) with the principle on the '
                  'local backend (XLA:CPU needs the granularity probe, run once '
                  'per machine and cached) and mark it on the plot.')


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def print_table(summary: dict, tau: float) -> None:
  key = boundary.tau_key(tau)
  cfg = summary['config']
  hw = summary['hardware']
  print(f"\n{summary['module']} {summary['preset']} x{cfg['scale']:g} "
        f"{cfg['dtype']} on {hw['name']} (config {summary['config_id']})")
  print(f"{'N':>6} {'T ms':>10} {'R':>7}  {'95% CI':<17} free? (tau {tau:g})"
        "  [R: median of paired per-round ratios]")
  for i, n in enumerate(summary['positions']):
    lo, hi = summary['ratio_ci'][i]
    print(f"{n:>6} {summary['t_median_s'][i] * 1e3:>10.3f} "
          f"{summary['ratio'][i]:>7.3f}  [{lo:.3f}, {hi:.3f}]  "
          f"{summary['verdicts'][key][i].replace('_', ' ')}")
  for n in summary['failed_positions']:
    print(f'{n:>6}   failed (see results.jsonl)')
  for k in summary['nfp']:
    nxt = summary['nfp_bracket'][k][1]
    status = summary.get('nfp_status', {}).get(k, 'decided')
    low, high = summary.get('nfp_interval', summary['nfp_range'])[k]
    print(f"NFP({k}) = {summary['nfp'][k]} {status.upper() if status != 'decided' else status}"
          f"  interval [{low}, {high}]  bracket [{summary['nfp'][k]}, "
          f"{nxt if nxt is not None else '>' + str(summary['positions'][-1])}]"
          f"   N_idle({k}) = {summary['n_idle'][k]} "
          f"(x{summary['n_idle_overprediction'][k]:.1f})")
    if status != 'decided':
      print(f"    unresolved: {summary['unresolved_reason'][k]}")
  cond = summary.get('conditions')
  if cond:
    bw = (f"; memory bandwidth (sentinel) {cond['bandwidth_gbs']:.1f} GB/s "
          f"[{cond['bandwidth_ci_gbs'][0]:.1f}, {cond['bandwidth_ci_gbs'][1]:.1f}]"
          if cond.get('bandwidth_gbs') else '')
    regime = cond.get('regime_change')
    print(f"{summary['rounds']} rounds ({summary['stopped']}; per N "
          f"{min(summary['rounds_per_n'].values())}-{max(summary['rounds_per_n'].values())})"
          f" on {cond['cpu_model']} ({cond['cores']} cores, "
          f"{' '.join(cond['isa_flags']) or 'no AVX'}); load {cond['load_before']:.1f} -> "
          f"{cond['load_after']:.1f}; {cond['share_interfered']:.0%} of rounds under "
          f"interference{bw}"
          + (f"; REGIME CHANGE at round {regime['round']} ({regime['before_gbs']:.1f} -> "
             f"{regime['after_gbs']:.1f} GB/s)" if regime else ''))
  print(f"T(1) = {summary['t_median_s'][0] * 1e3:.3f} ms is "
        f"{summary['t1_roofline_fraction']:.2f} of its bandwidth roofline "
        f"({summary['bytes_one'] / 1e6:.1f} MB at {hw['bandwidth'] / 1e9:.1f} GB/s)"
        f"; balance {hw['peak_flops'] / 1e9:.0f} GFLOP/s / "
        f"{hw['bandwidth'] / 1e9:.1f} GB/s = {hw['ridge']:.1f} FLOP/B")
  if summary.get('nfp_predicted'):
    print('predicted (principle): ' + ', '.join(
        f"NFP({k}) = {summary['nfp_predicted'][k]} "
        f"({summary['binding_mechanism'][k] or 'no crossing'})"
        for k in summary['nfp_predicted']) + '; resource-only: ' + ', '.join(
            f"{k}: {v}" for k, v in summary['nfp_resource'].items()))
  elif summary.get('prediction_error'):
    print(f"prediction failed: {summary['prediction_error'][:200]}")


def _write_outputs(out, summary: dict, name: str, tau: float) -> None:
  results.write_json(out / f'summary{name}.json', summary)
  if summary.get('status', 'ok') == 'ok':
    plots.ratio_plot(records.Summary.from_json(summary), out / f'ratio{name}.png',
                     boundary.tau_key(tau))


def predicted(cfg, summary, compiled, balance, device) -> dict:
  """The principle's prediction of this sweep, for its summary; never fatal."""
  try:
    probe = None
    if device.platform == 'cpu':
      probe = probe_lib.local_probe(hardware.cache_file('probe.json'), device=device,
                                    progress=_progress)
    return predict.for_sweep(cfg, summary, compiled,
                             target=targets.resolve(device.platform),
                             balance=balance, probe=probe)
  except Exception as e:  # pylint: disable=broad-except
    return dict(prediction_error=sweep.error_text(e))


def measure_one(cfg, positions, tau, plan, device) -> tuple[list, dict]:
  """(point records, summary record) of one configuration; a configuration
  that cannot run at all gets a failed summary, so a grid goes on."""
  try:
    balance = hardware.local_balance(cfg.dtype, hardware.cache_file('hardware.json'), device)
    result = sweep.measure_block(cfg, positions, plan=plan, warmup=FLAGS.warmup,
                                 balance=balance, taus=boundary.taus(tau),
                                 device=device, progress=_progress)
    points, summary = result.points, dict(result.summary, status='ok')
    if FLAGS.predict:
      summary.update(predicted(
          cfg, summary, [result.compiled[n] for n in summary['positions']],
          balance, device))
  except Exception as e:  # pylint: disable=broad-except
    _progress(f'failed: {sweep.error_text(e)[:300]}')
    points = []
    summary = dict(kind='summary', status='failed', error=sweep.error_text(e),
                   config_id=cfg.config_id(positions), module=cfg.module,
                   preset=cfg.preset, config=cfg.to_dict(), positions=positions)
  summary['provenance'] = results.provenance(
      seed=cfg.seed, xla_flags=os.environ.get('XLA_FLAGS', ''), device=device)
  return points, summary


def main(argv):
  positions, tau, plan = common.parse_sweep_flags(argv)
  device = common.device(FLAGS.backend)
  grid = common.block_configs(device.platform)
  configs = common.shard(grid)
  available = hardware.available_memory_bytes(device)
  for cfg in configs:  # before anything is measured
    sweep.check_fits(cfg, available)
  out = common.output_folder(FLAGS.out, '-'.join(FLAGS.module))
  log = results.ResultLog.open(out)
  done = log.summaries()
  print(f'measuring on {device.platform} ({device.device_kind}); '
        f'{len(configs)} of {len(grid)} configuration(s) (shard '
        f'{FLAGS.shard_index}/{FLAGS.num_shards}); results in {out}',
        file=sys.stderr)
  single = len(grid) == 1
  summaries = []
  for i, cfg in enumerate(configs):
    config_id = cfg.config_id(positions)
    name = '' if single else f'-{config_id}'
    if config_id in done:
      _progress(f'[{i + 1}/{len(configs)}] {config_id} already finished; skipped')
      summary = done[config_id]
      if not (out / f'summary{name}.json').exists():  # killed before writing it
        _write_outputs(out, summary, name, tau)
    else:
      _progress(f'[{i + 1}/{len(configs)}] {cfg.module} {cfg.preset} '
                f'x{cfg.scale:g} {cfg.dtype} (config {config_id})')
      points, summary = measure_one(cfg, positions, tau, plan, device)
      log.append(points + [summary])
      _write_outputs(out, summary, name, tau)
      if summary['status'] == 'ok':
        print_table(summary, tau)
        common.print_plan(summary, tau)
    summaries.append(summary)
  if not single:
    results.write_json(out / 'summary.json', {'kind': 'grid', 'summaries': summaries})
  failed = sum(s.get('status') == 'failed' for s in summaries)
  print(f'\nwrote {out}/results.jsonl, summary.json and plot(s)'
        + (f'; {failed} configuration(s) failed (see their summaries)' if failed else ''))


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
