r"""Regenerate the HLO fixtures of tests/test_hlo.py with the project's compile path.

  python scripts/make_hlo_fixtures.py

Each fixture is real XLA output: `nfp_jax.compile.compile_hlo` of a block (tiny
shapes, so the files stay small) for the local CPU or deviceless for h100/a100.
Single files hold `compiled.as_text()`; `*_dump/` folders hold the parts of an
`--xla_dump_to` folder the reader uses (the optimized HLO, the thunk sequence,
and for XLA:CPU the LLVM IR files cut to their `define` lines, which carry the
GEMV function names). tests/data/hlo/MANIFEST.json records, per fixture, the
call that made it and the equivalent tiling CLI command.
"""

import json
import pathlib
import re
import shutil
import sys
import tempfile

import jax

jax.config.update('jax_platforms', 'cpu')

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from nfp_jax import compile as compile_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import config  # pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import targets  # pylint: disable=g-import-not-at-top,wrong-import-position

OUT = pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'data' / 'hlo'

# name -> (module, choices, N, target, tiling, extra options, as a dump folder)
FIXTURES = {
    'cpu_dense_n1_dump': ('dense', {}, 1, 'cpu', 'xla-default', {}, True),
    'cpu_dense_n8': ('dense', {}, 8, 'cpu', 'xla-default', {}, False),
    'cpu_moe_ragged_n4': ('moe', {'moe_impl': 'ragged'}, 4, 'cpu', 'xla-default',
                          {}, False),
    'h100_dense_n1': ('dense', {}, 1, 'h100', 'xla-default', {}, False),
    'h100_dense_n64': ('dense', {}, 64, 'h100', 'xla-default', {}, False),
    'h100_dense_n16_cost': ('dense', {}, 16, 'h100', 'cost-model', {}, False),
    'h100_dense_n1024_cost_dump': ('dense', {}, 1024, 'h100', 'cost-model', {},
                                   True),
    'h100_dense_n64_cublas': ('dense', {}, 64, 'h100', 'xla-default',
                              {'xla_gpu_enable_triton_gemm': False}, False),
    'h100_moe_ragged_n16_cost': ('moe', {'moe_impl': 'ragged'}, 16, 'h100',
                                 'cost-model', {}, False),
    'h100_attention_dpa_n16_cost': ('attention', {'attn_impl': 'dpa',
                                                  'kv_len': 64}, 16, 'h100',
                                    'cost-model', {}, False),
    'a100_dense_n1': ('dense', {}, 1, 'a100', 'xla-default', {}, False),
    'a100_dense_n64_cost': ('dense', {}, 64, 'a100', 'cost-model', {}, False),
}


def _cli(module, choices, positions, target, tiling, extra) -> str:
  flags = [f'--module {module} --model tiny --target {target} '
           f'--tiling {tiling} --positions {positions}']
  names = {'moe_impl': 'impl'}
  flags += [f'--{names.get(k, k)} {v}' for k, v in choices.items()]
  if target == 'cpu':
    flags.append('--dtype float32')
  text = 'python -m experiments.tiling ' + ' '.join(flags)
  if extra:
    text += f'  (plus compiler options {extra}: library call only)'
  return text


def _copy_dump(source: pathlib.Path, target: pathlib.Path) -> None:
  target.mkdir(parents=True)
  for path in source.iterdir():
    if path.name.endswith(('after_optimizations.txt', 'thunk_sequence.txt')) and (
        '-' not in path.name.split('after_optimizations')[-1]):
      shutil.copy(path, target / path.name)
    elif path.name.endswith('kernel_module.ir-no-opt.ll'):
      defines = [l for l in path.read_text().splitlines()
                 if re.match(r'define ', l)]
      (target / path.name).write_text('\n'.join(defines) + '\n')


def main() -> None:
  if OUT.exists():
    shutil.rmtree(OUT)
  OUT.mkdir(parents=True)
  manifest = {}
  for name, (module, choices, positions, target, tiling, extra, dump) in (
      FIXTURES.items()):
    dtype = 'float32' if target == 'cpu' else 'bfloat16'
    cfg = config.resolve(module, 'tiny', dtype=dtype, **choices)
    with tempfile.TemporaryDirectory() as tmp:
      compiled = compile_lib.compile_hlo(cfg, positions, targets.resolve(target),
                                         tiling,
                                         dump_dir=tmp if dump else None,
                                         extra_options=extra)
      if dump:
        _copy_dump(pathlib.Path(tmp) / f'n{positions}', OUT / name)
      else:
        (OUT / f'{name}.txt').write_text(compiled.hlo_text)
    manifest[name] = dict(
        file=name if dump else f'{name}.txt', positions=positions, target=target,
        tiling_source=compiled.tiling_source, placeholder=compiled.placeholder,
        compiler_options=compiled.compiler_options,
        xla_flags=list(compiled.xla_flags), config=cfg.to_dict(),
        made_by=(f'nfp_jax.compile.compile_hlo(config.resolve({module!r}, "tiny", '
                 f'dtype={dtype!r}, **{choices}), {positions}, {target!r}, '
                 f'{tiling!r}, extra_options={extra})'),
        command=_cli(module, choices, positions, target, tiling, extra),
        jax=jax.__version__)
    print(f'wrote {name}')
  (OUT / 'MANIFEST.json').write_text(json.dumps(manifest, indent=1) + '\n')


if __name__ == '__main__':
  main()
