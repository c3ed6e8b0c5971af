r"""Benchmark of the harness itself (not a test): how close the dense block's T(1)
runs to its bandwidth roofline, and how much of a sweep's wall time is spent
outside the timed calls.

  python -m experiments.bench_harness
  python -m experiments.bench_harness --model llama3-8b --scale 1.0 --repeats 20
  python -m experiments.bench_harness --repeatability 10 [--competing_load]

--repeatability K runs the default dense sweep (adaptive rounds) K times and
prints each run's NFP(0.1) and status, how often the mode was reached, the
median CI half-width of R and the wall time per run; --competing_load keeps
one core busy meanwhile with a bounded busy loop it starts and stops itself.
"""

import statistics
import subprocess
import sys
import time

from absl import flags
import jax

from experiments import common
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import measure
from nfp_jax import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'llama3-8b', 'Preset of the dense block.')
flags.DEFINE_float('scale', 0.5, 'Width scale.')
flags.DEFINE_string('dtype', 'auto', 'Compute dtype (auto: native of the backend).')
flags.DEFINE_string('positions', common.DEFAULT_POSITIONS, 'Swept N.')
flags.DEFINE_integer('repeats', 15, 'Timed rounds.')
flags.DEFINE_string('backend', None, 'JAX backend.')
flags.DEFINE_integer('repeatability', 0, 'Run the default dense sweep this many '
                     'times and report how repeatable its NFP(0.1) is.')
flags.DEFINE_bool('competing_load', False, 'With --repeatability: keep one core '
                  'busy with a busy loop of our own during the runs.')

_BUSY_LIMIT_S = 3600  # the busy loop ends by itself even if we are killed


def busy_loop() -> subprocess.Popen:
  """A child process that spins on one core for at most _BUSY_LIMIT_S."""
  return subprocess.Popen([sys.executable, '-c',
                           'import time\nend = time.time() + %d\n'
                           'while time.time() < end: pass' % _BUSY_LIMIT_S])


def repeatability(cfg, positions, balance, device) -> None:
  busy = busy_loop() if FLAGS.competing_load else None
  try:
    runs = []
    for i in range(FLAGS.repeatability):
      start = time.perf_counter()
      s = sweep.run(cfg, positions, rounds=measure.RoundPlan(), balance=balance,
                    device=device).summary
      wall = time.perf_counter() - start
      half = statistics.median((hi - lo) / 2 for lo, hi in s['ratio_ci'][1:])
      runs.append((s['nfp']['0.1'], s['nfp_status']['0.1'], half, wall))
      print(f"run {i + 1}: NFP(0.1) = {runs[-1][0]} {runs[-1][1]}; interval "
            f"{s['nfp_interval']['0.1']}; median CI half-width of R {half:.3f}; "
            f"rounds {max(s['rounds_per_position'])}; sentinel "
            f"{s['conditions']['bandwidth_gbs']:.1f} GB/s; load "
            f"{s['conditions']['load_after']:.2f}; wall {wall:.1f} s", flush=True)
  finally:
    if busy is not None:
      busy.terminate()
      busy.wait()
  nfps = [r[0] for r in runs]
  mode = statistics.mode(nfps)
  decided = [r[0] for r in runs if r[1] == 'decided']
  print(f"{'with' if FLAGS.competing_load else 'without'} competing load: mode "
        f"NFP(0.1) = {mode} in {nfps.count(mode)}/{len(runs)} runs; decided in "
        f"{len(decided)}/{len(runs)} ({sum(n != mode for n in decided)} decided "
        f"differently from the mode); median CI half-width of R "
        f"{statistics.median(r[2] for r in runs):.3f}; wall per run median "
        f"{statistics.median(r[3] for r in runs):.1f} s, max "
        f"{max(r[3] for r in runs):.1f} s")


def main(argv):
  common.no_arguments(argv)
  device = common.device(FLAGS.backend)
  dtype = config.native_dtype(device.platform) if FLAGS.dtype == 'auto' else FLAGS.dtype
  cfg = config.resolve('dense', FLAGS.model, scale=FLAGS.scale, dtype=dtype)
  positions = common.parse_positions(FLAGS.positions)
  balance = hardware.local_balance(dtype, hardware.cache_file('hardware.json'), device)
  if FLAGS.repeatability:
    repeatability(cfg, positions, balance, device)
    return
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
  common.run(main)
