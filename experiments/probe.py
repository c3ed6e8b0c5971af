r"""Run the granularity probe on the local backend (plain GEMMs, fine N).

  python -m experiments.probe
  python -m experiments.probe --dtype float32,bfloat16 --rounds 15 --refresh \
      --out results/probe.json

Sweeps [N, K] x [K, F] on the fixed reference shapes of nfp_jax.probe (never a
block's own shapes) for N = 1..64 and coarser to 256, and prints per shape the
kernel switches, steps in T(N), the tile period if any, and each kernel kind's
streaming bandwidth (small N) and FLOP rate (large N). The result is cached per
machine in ~/.cache/nfp_jax/probe.json (the predictor reads it there) and
written to --out when given.
"""

import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import probe

FLAGS = flags.FLAGS
flags.DEFINE_list('dtype', ['float32'], f'Dtype(s): {", ".join(config.DTYPES)}.')
flags.DEFINE_integer('rounds', probe.PROBE_ROUNDS, 'Timed rounds; each round times every N once.')
flags.DEFINE_bool('refresh', False, 'Measure again even if the cache holds it.')
flags.DEFINE_string('out', None, 'Also write the probe JSON to this file.')
flags.DEFINE_string('backend', None, 'JAX backend to probe (default: JAX\'s).')


def print_probe(result: dict) -> None:
  print(f"probe of {result['backend']} ({result['device_kind']}), "
        f"{result['rounds']} rounds, measured {result['measured_at']}")
  for ref in result['references']:
    print(f"\n{ref['dtype']} [N, {ref['contraction']}] x [{ref['contraction']}, "
          f"{ref['features']}]")
    for switch in ref['kernel_switches']:
      print(f"  kernel switch {switch['from_kind']} -> {switch['to_kind']} at "
            f"N={switch['from_positions']}->{switch['to_positions']}")
    for step in ref['steps']:
      print(f"  step N={step['from_positions']}->{step['to_positions']}: "
            f"x{step['jump_ratio']:.2f}")
    print(f"  tile period: {ref['tile_period'] or 'none found'}")
    for kind, rates in ref['kinds_summary'].items():
      print(f"  {kind:>10} N {rates['positions'][0]}..{rates['positions'][1]}: "
            f"{rates['bandwidth_bytes_per_s'] / 1e9:6.1f} GB/s at small N, "
            f"{rates['flop_rate'] / 1e9:6.1f} GFLOP/s at large N")


def main(argv):
  common.no_arguments(argv)
  for dtype in FLAGS.dtype:
    if dtype not in config.DTYPES:
      raise common.UsageError(f'Unsupported --dtype {dtype!r}; choose from '
                              f'{", ".join(config.DTYPES)}.')
  if FLAGS.rounds < 3:
    raise common.UsageError(f'--rounds must be at least 3, got {FLAGS.rounds}.')
  device = common.device(FLAGS.backend)
  result = probe.local_probe(
      hardware.cache_file('probe.json'), tuple(FLAGS.dtype), rounds=FLAGS.rounds,
      refresh=FLAGS.refresh, device=device,
      progress=lambda m: print(f'  {m}', file=sys.stderr, flush=True))
  print_probe(result)
  if FLAGS.out:
    common.write_out(FLAGS.out, result)


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
