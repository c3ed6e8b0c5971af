r"""Compare one block's T(N) and near-free boundary across frameworks, locally.

  python -m experiments.compare --module dense --frameworks jax,torch
  python -m experiments.compare --module dense --model llama3-8b --scale 0.5 \
      --dtype float32 --frameworks jax,torch,torch-compile \
      --positions 1,2,4,8,16,32,64 --out results/compare-dense

Frameworks: jax (the Flax block, XLA), torch (its PyTorch twin, eager) and
torch-compile (the twin under torch.compile). Each runs on the local device,
one after the other, timed by the sweep's harness. Writes into --out:
results.jsonl (a "point" record per framework and N, a "summary" record per
framework, each with its config_id and `framework`), compare.json (per
framework t1_s, nfp and n_idle per tau, kernels per N, provenance) and
compare.png (R(N) and T(N) per framework); per configuration when the block
flags form a grid. A framework that cannot run the block is recorded as failed
with its error and the others go on; a folder holding finished frameworks is
resumed. PyTorch threads default to XLA:CPU's (the CPUs this process may use).
"""

import logging
import os
import re
import sys

# torch.profiler (kernel identity) prints a line per start and stop otherwise.
os.environ.setdefault('KINETO_LOG_LEVEL', '6')

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import boundary  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import compare  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import hardware  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import records  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import results  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
common.define_block_flags('dense')
common.define_sweep_flags()
flags.DEFINE_list('frameworks', ['jax', 'torch'],
                  f'Frameworks to compare: {", ".join(compare.FRAMEWORKS)}.')
flags.DEFINE_integer('threads', None, 'PyTorch intra-op threads; default: as '
                     'XLA:CPU, one per CPU this process may run on.')

INSTALL_TORCH = "install the torch extra: pip install -e '.[torch]'"


def _progress(message: str) -> None:
  print(f'  {message}', file=sys.stderr, flush=True)


def parse_frameworks(names) -> list:
  """The --frameworks list, checked: known, not repeated, PyTorch importable."""
  if not names:
    raise common.UsageError('--frameworks is empty; choose from '
                            f'{", ".join(compare.FRAMEWORKS)}.')
  for name in names:
    if name not in compare.FRAMEWORKS:
      raise common.UsageError(f'Unknown framework {name!r}; choose from '
                              f'{", ".join(compare.FRAMEWORKS)}.')
  if len(set(names)) != len(names):
    raise common.UsageError(f'--frameworks repeats a framework: {",".join(names)}.')
  if any(n in compare.TORCH_FRAMEWORKS for n in names):
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
    except ImportError:
      raise common.UsageError(f'PyTorch is not installed; {INSTALL_TORCH}.') from None
  return list(names)


def setup_torch(frameworks, configs, device) -> dict:
  """Checks the blocks have twins, sets PyTorch's threads; its provenance."""
  if not any(n in compare.TORCH_FRAMEWORKS for n in frameworks):
    return {}
  from nfp_jax.torch_blocks import run  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from nfp_jax import torch_blocks  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  for cfg in configs:
    if cfg.module not in torch_blocks.MODULES:
      raise common.UsageError(
          f'There is no PyTorch twin of --module {cfg.module}; twins exist for '
          f'{", ".join(torch_blocks.MODULES)}.')
  if device.platform != 'cpu':
    raise common.UsageError(f'The PyTorch twins run on the CPU; measure JAX on '
                            f'{device.platform} alone with --frameworks jax.')
  if FLAGS.threads is not None and FLAGS.threads < 1:
    raise common.UsageError(f'--threads must be at least 1, got {FLAGS.threads}.')
  run.set_threads(FLAGS.threads or run.xla_like_threads())
  # torch.compile's traceback of an op it cannot trace is logged besides being
  # raised; the error is recorded in the results, once.
  logging.getLogger('torch._subclasses.fake_tensor').setLevel(logging.CRITICAL)
  return run.provenance()


def headline(error: str) -> str:
  """One line of a recorded error: its first line, and the error torch.compile
  reports inside its explanation ("... got RuntimeError('...')") if any."""
  first = error.splitlines()[0]
  inner = re.search(r"got (\w+(?:Error|Exception))\((['\"])(.*?)\2\)", error)
  return f'{first}: {inner.group(1)}: {inner.group(3)}' if inner else first


def _kernel_text(kernels: list) -> str:
  parts = []
  for k in kernels:
    if 'kind' in k:  # XLA: dot kernels by source op, then the others
      parts.append(f"{k['op']}:{k['kind']}" if k['kind'] != 'other'
                   else f"{k['calls']} other")
    elif k['self_share'] >= 0.05:  # PyTorch: the ops that take the time
      parts.append(f"{k['op']} x{k['calls']} ({k['self_share']:.0%})")
  return ', '.join(parts)


def print_table(comp: dict, tau: float) -> None:
  key = boundary.tau_key(tau)
  cfg, hw = comp['config'], comp['hardware']
  ok = {n: f for n, f in comp['frameworks'].items() if f['status'] == 'ok'}
  print(f"\n{comp['module']} {comp['preset']} x{cfg['scale']:g} {cfg['dtype']} "
        f"on {hw['name']}: T(N) ms and R(N) per framework")
  print(f"{'N':>6} " + ''.join(f'{n:>24}' for n in ok))
  for i, n in enumerate(comp['positions']):
    cells = []
    for fw in ok.values():
      if n in fw['positions']:
        j = fw['positions'].index(n)
        cells.append(f"{fw['t_median_s'][j] * 1e3:.3f} ({fw['ratio'][j]:.2f})")
      else:
        cells.append('failed')
    print(f'{n:>6} ' + ''.join(f'{c:>24}' for c in cells))
  taus = list(next(iter(ok.values()))['nfp']) if ok else []
  nfp_heads = ''.join(f'{"NFP(" + k + ")":>10}' for k in taus)
  print(f"{'framework':<14} {'T(1) ms':>9} {nfp_heads} {'N_idle(' + key + ')':>12}"
        f" {'T1/roofline':>12} {'load':>5}")
  for name, fw in comp['frameworks'].items():
    if fw['status'] != 'ok':
      print(f"{name:<14} failed: {headline(fw['error'])[:300]}")
      continue
    nfps = ''.join(f"{fw['nfp'][k]:>10}" for k in taus)
    load = (fw.get('load_average') or [float('nan')])[0]
    print(f"{name:<14} {fw['t1_s'] * 1e3:>9.3f} {nfps} {fw['n_idle'][key]:>12}"
          f" {fw['t1_roofline_fraction']:>12.2f} {load:>5.1f}")
  for name, fw in ok.items():
    first, last = str(fw['positions'][0]), str(fw['positions'][-1])
    print(f"{name} kernels: N={first}: {_kernel_text(fw['kernels'][first])}; "
          f"N={last}: {_kernel_text(fw['kernels'][last])}")


def main(argv):
  positions, tau, plan = common.parse_sweep_flags(argv)
  frameworks = parse_frameworks(FLAGS.frameworks)
  device = common.device(FLAGS.backend)
  configs = common.block_configs(device.platform)
  available = hardware.available_memory_bytes(device)
  for cfg in configs:  # before anything is measured
    sweep.check_fits(cfg, available)
  torch_provenance = setup_torch(frameworks, configs, device)
  out = common.output_folder(FLAGS.out, 'compare-' + '-'.join(FLAGS.module))
  log = results.ResultLog.open(out)
  done = log.summaries()
  print(f'comparing {", ".join(frameworks)} on {device.platform} '
        f'({device.device_kind}); {len(configs)} configuration(s); results in '
        f'{out}', file=sys.stderr)
  comparisons = []
  for i, cfg in enumerate(configs):
    balance = hardware.local_balance(cfg.dtype, hardware.cache_file('hardware.json'), device)
    provenance = results.provenance(
        seed=cfg.seed, xla_flags=os.environ.get('XLA_FLAGS', ''), device=device,
        **torch_provenance)
    summaries = []
    for framework in frameworks:
      config_id = compare.framework_config_id(cfg, positions, framework)
      if config_id in done:
        _progress(f'{framework} {config_id} already finished; skipped')
        summaries.append(records.Summary.from_json(done[config_id]))
        continue
      _progress(f'[{i + 1}/{len(configs)}] {framework}: {cfg.module} '
                f'{cfg.preset} x{cfg.scale:g} {cfg.dtype} (config {config_id})')
      points, summary = compare.measure_framework(
          framework, cfg, positions, balance=balance, plan=plan,
          warmup=FLAGS.warmup, taus=boundary.taus(tau), device=device,
          progress=_progress)
      if summary['status'] != 'ok':
        _progress(f"{framework} failed: {headline(summary['error'])[:300]}")
      summary['provenance'] = provenance
      log.append(points + [summary])
      summaries.append(records.Summary.from_json(summary))
    comp = dict(compare.comparison(summaries), provenance=provenance)
    comparisons.append(comp)
    print_table(comp, tau)
    name = '' if len(configs) == 1 else f'-{cfg.config_id(positions)}'
    results.write_json(out / f'compare{name}.json', comp)
    plots.overlay_plot(comp, out / f'compare{name}.png', boundary.tau_key(tau))
  if len(configs) > 1:
    results.write_json(out / 'compare.json', {'kind': 'grid',
                                              'comparisons': comparisons})
  print(f'\nwrote {out}/results.jsonl, compare.json and plot(s)')


if __name__ == '__main__':
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
