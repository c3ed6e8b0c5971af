r"""Benchmark of the harness itself (not a test): how close the dense block's T(1)
runs to its bandwidth roofline, and how much of a sweep's wall time is spent
outside the timed calls.

  python -m experiments.bench_harness
  python -m experiments.bench_harness --model llama3-8b --scale 1.0 --repeats 20
"""

import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'llama3-8b', 'Preset of the dense block.')
flags.DEFINE_float('scale', 0.5, 'Width scale.')
flags.DEFINE_string('dtype', 'auto', 'Compute dtype (auto: native of the backend).')
flags.DEFINE_string('positions', common.DEFAULT_POSITIONS, 'Swept N.')
flags.DEFINE_integer('repeats', 15, 'Timed rounds.')
flags.DEFINE_string('backend', None, 'JAX backend.')


def main(argv):
  common.no_arguments(argv)
  device = common.device(FLAGS.backend)
  dtype = config.native_dtype(device.platform) if FLAGS.dtype == 'auto' else FLAGS.dtype
  cfg = config.resolve('dense', FLAGS.model, scale=FLAGS.scale, dtype=dtype)
  positions = common.parse_positions(FLAGS.positions)
  balance = hardware.local_balance(dtype, hardware.cache_file('hardware.json'), device)
  result = sweep.run(cfg, positions, rounds=FLAGS.repeats, balance=balance,
                     device=device)
  s = result.summary
  t1 = s['t_median_s'][0]
  roofline = s['bytes_one'] / balance.bandwidth
  outside = s['wall_s'] - s['timed_s']
  print(f"dense {cfg.preset} x{cfg.scale:g} {dtype} on {device.platform} "
        f"({device.device_kind}), d_model={cfg.d_model} d_ff={cfg.d_ff}")
  print(f"(a) T(1) = {t1 * 1e3:.3f} ms; bandwidth roofline bytes(1)/BW = "
        f"{s['bytes_one'] / 1e6:.1f} MB / {balance.bandwidth / 1e9:.1f} GB/s = "
        f"{roofline * 1e3:.3f} ms; T(1) / roofline = {t1 / roofline:.2f} "
        f"(t1_roofline_fraction {s['t1_roofline_fraction']:.2f})")
  print(f"(b) sweep wall {s['wall_s']:.2f} s: inside timed calls {s['timed_s']:.2f} s, "
        f"outside {outside:.2f} s (of which build + compile + first call "
        f"{s['setup_s']:.2f} s); outside/inside = {outside / s['timed_s']:.2f}; "
        f"{len(positions)} N x ({FLAGS.repeats} rounds + {s['warmup']} warm-up) "
        f"calls; per-call floor of this backend {balance.call_floor_s * 1e6:.1f} us")
  sys.stdout.flush()


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
