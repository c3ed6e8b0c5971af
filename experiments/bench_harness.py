r"""Benchmark of the harness itself (not a test).

  python -m experiments.bench_harness                      # roofline, overhead
  python -m experiments.bench_harness --repeatability 10   # the default dense sweep 10x
  python -m experiments.bench_harness --repeatability 10 --competing_load

Without --repeatability: how close the dense block's T(1) runs to its bandwidth
roofline, and how much of a sweep's wall time is spent outside the timed calls.
With --repeatability K: the default dense sweep K times in a row (optionally
beside a busy loop of its own on one core, which it stops itself); per run its
NFP(0.1) and status, how often the mode was reached, the median CI half-width
of R and the wall time (nfp_jax/repeatability.py).
"""

import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import repeatability
from nfp_jax import results
from nfp_jax import sweep

FLAGS = flags.FLAGS
common.define_sweep_flags()
flags.DEFINE_string('model', 'llama3-8b', 'Preset of the dense block.')
flags.DEFINE_float('scale', 0.5, 'Width scale.')
flags.DEFINE_string('dtype', 'auto', 'Compute dtype (auto: native of the backend).')
flags.DEFINE_integer('repeatability', None, 'Run the default dense sweep this '
                     'many times and report how repeatable its NFP(0.1) is.')
flags.DEFINE_bool('competing_load', False, 'With --repeatability: run a busy '
                  'loop on one core meanwhile.')


def main(argv):
  positions, tau, plan = common.parse_sweep_flags(argv)
  device = common.device(FLAGS.backend)
  dtype = config.native_dtype(device.platform) if FLAGS.dtype == 'auto' else FLAGS.dtype
  cfg = config.resolve('dense', FLAGS.model, scale=FLAGS.scale, dtype=dtype)
  balance = hardware.local_balance(dtype, hardware.cache_file('hardware.json'), device)
  if FLAGS.repeatability is not None:
    if FLAGS.repeatability < 1:
      raise common.UsageError('--repeatability must be at least 1.')
    report = repeatability.run_sweeps(
        cfg, positions, FLAGS.repeatability, balance=balance, plan=plan,
        device=device, competing_load=FLAGS.competing_load, tau=tau,
        progress=lambda m: print(f'  {m}', file=sys.stderr, flush=True))
    print(repeatability.text(report))
    if FLAGS.out:
      common.write_out(common.output_folder(FLAGS.out, 'repeatability') /
                       'repeatability.json', dict(
                           report, provenance=results.provenance(seed=cfg.seed,
                                                                 device=device)))
    return
  result = sweep.measure_block(cfg, positions, plan=plan, balance=balance,
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
        f"{s['rounds']} rounds ({s['stopped']}) + {s['warmup']} warm-up calls per N; "
        f"per-call floor of this backend {balance.call_floor_s * 1e6:.1f} us")
  sys.stdout.flush()


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
