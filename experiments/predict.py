r"""Predict T(N) and the near-free boundary of a block on a target, no GPU needed.

  python -m experiments.predict --module dense --model llama3-8b --target h100
  python -m experiments.predict --module model --model llama3-8b --target a100 \
      --tiling cost-model --out results/llama3-a100.json
  python -m experiments.predict --module moe --target cpu   # this machine
  python -m experiments.predict --module dense --model llama3-8b --target v5e

NVIDIA targets compile deviceless (the gpu-aot extra), TPU targets too (the
tpu-aot extra; XLA:TPU's own estimate and the windows it chose are printed
beside the principle), both priced with the spec table; `--target cpu` prices the local XLA:CPU kernels with the measured
balance and the granularity probe (each run once per machine, then cached).
Prints T_pred(N), the idle-compute, resource-only and principle boundaries and
the mechanism that binds; --out writes JSON (and a PNG beside it).
"""

import pathlib
import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import hardware
from nfp_jax import predict
from nfp_jax import probe as probe_lib
from nfp_jax import results

FLAGS = flags.FLAGS
common.define_block_flags('dense')
common.define_plan_flags()
common.define_target_flags()
flags.DEFINE_string('out', None, 'Write the prediction as JSON to this file.')


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def local_inputs(dtype: str):
  """The local balance and granularity probe, measured once per machine."""
  device = jax.devices()[0]
  balance = hardware.local_balance(dtype, hardware.cache_file('hardware.json'), device)
  probe = probe_lib.local_probe(hardware.cache_file('probe.json'), device=device,
                                progress=_progress)
  return balance, probe


def print_prediction(cfg, p: dict) -> None:
  hw = p['hardware']
  print(f"\n{cfg.module} {cfg.preset} x{cfg.scale:g} {cfg.dtype} on {p['target']} "
        f"({hw['name']}, tiling {p['tiling_source']}"
        f"{', PLACEHOLDER tiles' if p['placeholder'] else ''}; {p['composition']})")
  print(f"{'N':>6} {'T_pred us':>11} {'R_pred':>8} {'T_res us':>10} {'R_res':>7}")
  for n, t, r in zip(p['positions'], p['t_pred_s'], p['t_resource_s']):
    print(f"{n:>6} {t * 1e6:>11.1f} {t / p['t_pred_s'][0]:>8.3f} {r * 1e6:>10.1f} "
          f"{r / p['t_resource_s'][0]:>7.3f}")
  for k in p['nfp_predicted']:
    print(f"tau {k}: NFP_pred = {p['nfp_predicted'][k]} "
          f"({p['binding_mechanism'][k] or 'no crossing'}), NFP_resource = "
          f"{p['nfp_resource'][k]}, N_idle = {p['n_idle'][k]}")
  if p.get('t_compiler_s'):
    print_compiler(p)


def print_compiler(p: dict) -> None:
  """XLA:TPU's own estimate beside the principle, and its windows per N."""
  print("\nXLA:TPU's own cost model: optimal_seconds (T_xla) and the sum of "
        "estimated_cycles at the spec clock (T_cyc)")
  print(f"{'N':>6} {'T_pred us':>11} {'T_xla us':>10} {'R_xla':>7} "
        f"{'T_cyc us':>10} {'R_cyc':>7}")
  for n, t, x, c in zip(p['positions'], p['t_pred_s'], p['t_compiler_s'],
                        p['t_cycles_s']):
    print(f"{n:>6} {t * 1e6:>11.1f} {x * 1e6:>10.1f} "
          f"{x / p['t_compiler_s'][0]:>7.3f} {c * 1e6:>10.1f} "
          f"{c / p['t_cycles_s'][0]:>7.3f}")
  for k in p['nfp_compiler']:
    print(f"tau {k}: NFP_pred = {p['nfp_predicted'][k]}, NFP_compiler = "
          f"{p['nfp_compiler'][k]}, NFP_cycles = {p['nfp_cycles'][k]}")
  print('\nWindows XLA:TPU chose (output / kernel window in tiles, iterations, '
        'estimated cycles):')
  for n, fusions in zip(p['positions'], p['windows']):
    cells = [f"{f['op'] or f['fusion']}:{_bounds(f['output_window'])}/"
             f"{_bounds(f['kernel_window'])} it{_bounds(f['iterations'])} "
             f"c{f['estimated_cycles']}" for f in fusions if f['kernel_window']]
    print(f"{n:>6} {'; '.join(cells) or '(no windowed matmul)'}")


def _bounds(values) -> str:
  return 'x'.join(map(str, values)) if values else '-'


def main(argv):
  common.no_arguments(argv)
  positions = common.parse_positions(FLAGS.positions)
  target = common.target(FLAGS.target)
  if target.name == 'gpu':
    raise common.UsageError('experiments.predict runs on the CPU; --target gpu '
                            '(a local GPU) is measured by experiments.sweep '
                            '--backend gpu instead.')
  configs = common.block_configs(target.platform)
  if len(configs) != 1:
    raise common.UsageError(f'experiments.predict takes one configuration; the '
                            f'flags give {len(configs)}.')
  cfg = configs[0]
  out = pathlib.Path(FLAGS.out) if FLAGS.out else None
  if out:
    common.output_folder(str(out.parent), 'predict')
  balance, probe = (local_inputs(cfg.dtype) if target.name == 'cpu'
                    else (None, None))
  prediction = predict.predict(cfg, positions, target=target, tiling=FLAGS.tiling,
                               balance=balance, probe=probe, progress=_progress)
  p = dict(prediction.to_dict(), config=cfg.to_dict(), config_id=cfg.config_id(
      positions), provenance=results.provenance(seed=cfg.seed,
                                                target=target.name))
  print_prediction(cfg, p)
  common.print_plan(p)
  if out:
    common.write_out(str(out), p)


if __name__ == '__main__':
  jax.config.update('jax_platforms', 'cpu')
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
