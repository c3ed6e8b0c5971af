r"""Show the tiling XLA chose for a block at each N, or for a user's own HLO dump.

  python -m experiments.tiling --module dense --model tiny --target h100 \
      --tiling cost-model --positions 1,16,64,256,1024
  python -m experiments.tiling --module moe --impl ragged --target a100
  python -m experiments.tiling --module dense --target cpu --positions 1,2,16
  python -m experiments.tiling --hlo /path/to/xla_dump_folder --out tiles.json
  python -m experiments.tiling --module dense --model llama3-8b --target v5e
  python -m experiments.tiling --hlo /path/to/tpu_dump_folder   # *after_codegen.txt

NVIDIA targets compile deviceless (no GPU needed; the gpu-aot extra provides the
CUDA plugin). Prints one table per N: each kernel's kind, tile along N and
along the features, block_k, split-K, warps, stages, grid blocks and waves on
the target's SM count. TPU targets (the tpu-aot extra) compile deviceless
too and show, per fusion, the layout tiles and the windows XLA:TPU chose
(output, kernel and input window bounds in tiles, iteration bounds) with its
estimated_cycles. `--out FILE` writes
{"modules": [{"name", "file", "positions", "target", "tiling_source",
"placeholder", "kernels": [...]}]}.
"""

import pathlib
import sys

from absl import flags
import jax

from experiments import common
from nfp_jax import autotune
from nfp_jax import compile as compile_lib
from nfp_jax import hlo
from nfp_jax import hlo_tpu
from nfp_jax import pricing_gpu
from nfp_jax import results

FLAGS = flags.FLAGS
common.define_block_flags(default_module='dense')
common.define_target_flags()
flags.DEFINE_string('hlo', None, 'Read this HLO file or --xla_dump_to folder '
                    'instead of compiling a block.')
flags.DEFINE_string('dump_dir', None, 'Keep XLA\'s dump of each N here.')
flags.DEFINE_string('out', None, 'Write the kernels as JSON to this file.')
flags.DEFINE_bool('all_kernels', False, 'Also list elementwise kernels (kind '
                  'other) in the tables.')

_COLUMNS = (('kernel', 28), ('op', 14), ('kind', 15), ('tile_N', 6),
            ('tile_F', 6), ('blk_k', 5), ('splitK', 6), ('warps', 5),
            ('stages', 6), ('grid', 7), ('waves', 5))


def _cell(value) -> str:
  return '-' if value is None else str(value)


def print_module(module: dict, sm_spec) -> None:
  placeholder = ' (PLACEHOLDER: no autotuning)' if module.get('placeholder') else ''
  print(f"\n{module['name']}  N={module['positions']}  target={module['target']}"
        f"  tiling={module['tiling_source']}{placeholder}")
  print(' '.join(f'{name:>{width}}' for name, width in _COLUMNS))
  for kernel in module['kernel_records']:
    if kernel.kind == 'other' and not FLAGS.all_kernels:
      continue
    waves = pricing_gpu.waves(kernel, sm_spec) if sm_spec else None
    values = (kernel.name[-28:], '+'.join(kernel.source_ops)[:14] or '-',
              kernel.kind, kernel.tile_positions, kernel.tile_features,
              kernel.block_k, kernel.split_k, kernel.num_warps, kernel.num_stages,
              kernel.grid_blocks, waves)
    won = module.get('winners', {}).get(kernel.name)
    if won:  # model-autotune: the winning candidate replaces the compiled tile
      values = values[:2] + (f"model:{won['backend']}",) + tuple(
          won[k] for k in ('tile_positions', 'tile_features', 'block_k', 'split_k',
                           'num_warps', 'num_stages', 'grid_blocks', 'waves'))
    print(' '.join(f'{_cell(v):>{w}}' for v, (_, w) in zip(values, _COLUMNS)))


_TPU_COLUMNS = (('fusion', 22), ('op', 14), ('kind', 15), ('tiles', 13),
                ('out_win', 8), ('kern_win', 8), ('in_win', 7), ('iters', 9),
                ('cycles', 9))


def print_tpu_module(module: dict) -> None:
  """The fusions of one XLA:TPU program with the windows it chose."""
  program = module['program']
  estimate = (f"  optimal_seconds={program.compiler_seconds * 1e6:.1f} us"
              if program.optimal_seconds is not None else '')
  print(f"\n{module['name']}  N={module['positions']}  target={module['target']}"
        f"{estimate}  estimated_cycles={program.estimated_cycles}")
  print(' '.join(f'{name:>{width}}' for name, width in _TPU_COLUMNS))
  bounds = lambda b: 'x'.join(map(str, b)) if b else None
  for f in program.fusions:
    if f.kind in ('tpu_fusion', 'tpu_copy') and not FLAGS.all_kernels:
      continue
    values = (f.name[-22:], '+'.join(f.source_ops)[:14] or '-', f.kind, f.tiles,
              bounds(f.output_window_bounds), bounds(f.kernel_window_bounds),
              bounds(f.input_window_bounds), bounds(f.iteration_bounds),
              f.estimated_cycles)
    print(' '.join(f'{_cell(v):>{w}}' for v, (_, w) in zip(values, _TPU_COLUMNS)))


def _is_tpu_dump(path: str) -> bool:
  folder = pathlib.Path(path)
  if folder.is_dir():
    return bool(hlo_tpu.dump_files(folder))
  try:
    return folder.is_file() and hlo_tpu.is_tpu_hlo(folder.read_text())
  except (OSError, UnicodeDecodeError):
    return False


def print_winner_changes(modules) -> None:
  """model-autotune: each GEMM op's winning config as N grows, one line per
  change."""
  changes = {}
  for module in modules:
    for kernel in module['kernel_records']:
      won = module.get('winners', {}).get(kernel.name)
      if won:
        op = f"{module['name']} {'+'.join(kernel.source_ops) or kernel.name}"
        changes.setdefault(op, []).append((module['positions'], won['config']))
  for op, picks in changes.items():
    print(f'\nmodel-autotune winners, {op}:')
    last = None
    for n, label in picks:
      if label != last:
        print(f'  from N={n}: {label}')
        last = label


def _modules_from_dump(path: str, target: str | None) -> list:
  try:
    if _is_tpu_dump(path):
      return [dict(name=p.name, file=p.file, positions=p.positions,
                   target=target or 'tpu', tiling_source='as dumped',
                   placeholder=None, program=p, kernel_records=p.fusions)
              for p in hlo_tpu.read_dump(path)]
    read = hlo.read_dump(path)
  except (hlo.HloParseError, OSError) as e:
    raise common.UsageError(str(e)) from None
  return [dict(name=m.name, file=m.file, positions=m.positions,
               target=target or m.platform, tiling_source='as dumped',
               placeholder=None, kernel_records=m.kernels) for m in read]


def _modules_from_blocks(target, positions: list) -> list:
  modules = []
  for cfg in common.block_configs(target.platform):
    compiled = compile_lib.compile_hlo_many(cfg, positions, target, FLAGS.tiling,
                                            FLAGS.dump_dir)
    for one in compiled:
      print(f'compiled {cfg.module} {cfg.preset} N={one.positions} for '
            f'{target.name} in {one.compile_s:.2f} s', file=sys.stderr)
      modules.append(dict(
          name=f'{cfg.module}-{cfg.preset}-{cfg.config_id()}', file=None,
          positions=one.positions, target=target.name,
          tiling_source=one.tiling_source, placeholder=one.placeholder,
          compile_s=one.compile_s, xla_flags=list(one.xla_flags),
          compiler_options=one.compiler_options, config=cfg.to_dict(),
          kernel_records=one.kernels(),
          **(dict(program=one.program()) if one.is_tpu else {})))
  return modules


def main(argv):
  common.no_arguments(argv)
  target = common.target(FLAGS.target)
  if FLAGS.hlo:
    named = FLAGS['target'].present
    modules = _modules_from_dump(FLAGS.hlo, target.name if named else None)
    spec = target.spec if named else None
  else:
    modules = _modules_from_blocks(target,
                                   common.parse_positions(FLAGS.positions))
    spec = target.spec
  spec = spec if spec is not None and spec.gpu else None
  for module in modules:
    if 'program' in module:
      print_tpu_module(module)
      continue
    if module['tiling_source'] == 'model-autotune' and spec is not None:
      module['winners'] = {k.name: w for k in module['kernel_records']
                           if (w := autotune.kernel_winner(k, spec))}
    print_module(module, spec)
  print_winner_changes(modules)
  if FLAGS.out:
    payload = {'modules': [
        dict({k: v for k, v in m.items() if k not in ('kernel_records', 'program')},
             kernels=[k.to_dict() for k in m['kernel_records']],
             **({'program': {k: v for k, v in m['program'].to_dict().items()
                             if k != 'fusions'}} if 'program' in m else {}))
        for m in modules],
               'provenance': results.provenance(
                   seed=FLAGS.seed, device=jax.devices('cpu')[0],
                   hlo_source=FLAGS.hlo or 'compiled')}
    common.write_out(FLAGS.out, payload)


if __name__ == '__main__':
  # Deviceless NVIDIA compiles need a CPU-only JAX in this process.
  jax.config.update('jax_platforms', 'cpu')
  jax.config.parse_flags_with_absl()
  common.run_entry_point(main)
