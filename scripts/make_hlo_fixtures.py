r"""Regenerate the HLO fixtures of tests/test_hlo.py with the project's compile path.

  python scripts/make_hlo_fixtures.py          # XLA:CPU and XLA:GPU
  python scripts/make_hlo_fixtures.py tpu      # XLA:TPU (the tpu-aot extra)

Each fixture is real XLA output: `nfp_jax.compile.compile_hlo` of a block (tiny
shapes, so the files stay small) for the local CPU or deviceless for h100/a100.
Single files hold `compiled.as_text()`; `*_dump/` folders hold the parts of an
`--xla_dump_to` folder the reader uses (the optimized HLO, the thunk sequence,
and for XLA:CPU the LLVM IR files cut to their `define` lines, which carry the
GEMV function names). tests/data/hlo/MANIFEST.json records, per fixture, the
call that made it and the equivalent tiling CLI command.

The XLA:TPU fixtures (tests/data/hlo/tpu/, tests/test_hlo_tpu.py) are
deviceless compiles of full-size blocks (llama3-8b, mixtral-8x7b) (the HLO text does not grow
with the shapes): `*_dump/` folders hold the `*.after_codegen.txt` file of an
`--xla_dump_to` folder, single files `compiled.as_text()`; their MANIFEST.json
also records `compiled.cost_analysis()`.
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


OUT_TPU = OUT / 'tpu'

# name -> (module, model, choices, N, target, as a dump folder).
FIXTURES_TPU = {
    'v5e_dense_n1': ('dense', 'llama3-8b', {}, 1, 'v5e', False),
    'v5e_dense_n16_dump': ('dense', 'llama3-8b', {}, 16, 'v5e', True),
    'v5e_dense_n129': ('dense', 'llama3-8b', {}, 129, 'v5e', False),
    'v6e_dense_n256': ('dense', 'llama3-8b', {}, 256, 'v6e', False),
    'v5e_moe_ragged_n16': ('moe', 'mixtral-8x7b', {'moe_impl': 'ragged'}, 16,
                           'v5e', False),
    'v5e_attention_n16': ('attention', 'llama3-8b', {'kv_len': 4096}, 16, 'v5e',
                          False),
}


def _cli(module, choices, positions, target, tiling, extra,
         model='tiny') -> str:
  flags = [f'--module {module} --model {model} --target {target} '
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
  for path in OUT.glob('*') if OUT.exists() else ():  # the TPU ones stay
    if path != OUT_TPU:
      shutil.rmtree(path) if path.is_dir() else path.unlink()  # pylint: disable=expression-not-assigned
  OUT.mkdir(parents=True, exist_ok=True)
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


def main_tpu() -> None:
  """The XLA:TPU fixtures (tests/data/hlo/tpu/), deviceless, full size."""
  if OUT_TPU.exists():
    shutil.rmtree(OUT_TPU)
  OUT_TPU.mkdir(parents=True)
  manifest = {}
  for name, (module, model, choices, positions, target, dump) in (
      FIXTURES_TPU.items()):
    cfg = config.resolve(module, model, dtype='bfloat16', **choices)
    with tempfile.TemporaryDirectory() as tmp:
      compiled = compile_lib.compile_hlo(cfg, positions, targets.resolve(target),
                                         dump_dir=tmp if dump else None)
      if dump:
        (OUT_TPU / name).mkdir()
        for path in (pathlib.Path(tmp) / f'n{positions}').glob(
            '*after_codegen.txt'):
          shutil.copy(path, OUT_TPU / name / path.name)
      else:
        (OUT_TPU / f'{name}.txt').write_text(compiled.hlo_text)
    manifest[name] = dict(
        file=name if dump else f'{name}.txt', positions=positions, target=target,
        tiling_source=compiled.tiling_source, config=cfg.to_dict(),
        cost=compiled.cost,
        made_by=(f'nfp_jax.compile.compile_hlo(config.resolve({module!r}, '
                 f'{model!r}, dtype="bfloat16", **{choices}), {positions}, '
                 f'targets.resolve({target!r}))'),
        command=_cli(module, choices, positions, target, 'xla-default', {},
                     model=model) + (' --dump_dir DIR' if dump else ''),
        jax=jax.__version__)
    print(f'wrote {name}')
  (OUT_TPU / 'MANIFEST.json').write_text(json.dumps(manifest, indent=1) + '\n')


if __name__ == '__main__':
  main_tpu() if sys.argv[1:] == ['tpu'] else main()  # pylint: disable=expression-not-assigned
