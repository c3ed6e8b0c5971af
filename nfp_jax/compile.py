"""Compile a block's forward to optimized HLO for the local CPU or an NVIDIA target.

Nothing is allocated: the forward is lowered on `jax.ShapeDtypeStruct`s. NVIDIA
targets need no GPU: XLA:GPU compiles deviceless from a
`stream_executor.GpuTargetConfigProto` that `target_config_text` writes from the
spec table (`hardware.SPECS[target].gpu`), never from a hand-kept proto file.

Where the tiling comes from is chosen by `tiling` and recorded on every result:
  xla-default          what XLA does with nothing autotuned. Deviceless, that is
                       one fallback config for every GEMM: `placeholder=True`.
  cost-model           XLA's analytical tile choice
                       (--xla_gpu_experimental_cost_model_gemm_tiling_options=top=1).
  autotune-file:PATH   autotune results recorded on a real GPU
                       (--xla_gpu_dump_autotune_results_to there), replayed; a
                       kernel missing from the file is an error, not a silent
                       fallback to the placeholder.
  model-autotune       XLA's autotuner with the principle as its clock
                       (autotune.py): compiled once for the structure, every
                       GEMM re-tiled per N by pricing its candidates.
  override:<config>    one Triton config for every GEMM, e.g.
                       'override:block_m:64 block_n:128 block_k:64 num_stages:4
                       num_warps:4 num_ctas:1'.
On XLA:CPU there is nothing to choose (tiles live inside YNNPACK/Eigen): only
`xla-default`, and it is what runs, so it is no placeholder.

Options per compile vs per process (XLA 0.10.2, checked): the override, the
autotune file, `xla_gpu_enable_triton_gemm` and `xla_dump_to` work as
`lowered.compile(compiler_options=...)`; the cost-model option is a message
field the compiler-options path rejects ("not a valid message value"), so it
only works in XLA_FLAGS, which XLA reads once per process. Such compiles (and
deviceless compiles from a process whose JAX is not CPU-only) run in a child
process (`python -m nfp_jax.compile`) with the flags in its environment.
"""

import dataclasses
import json
import pathlib
import subprocess
import sys
import tempfile
import time

from nfp_jax import blocks
from nfp_jax import config as config_lib
from nfp_jax import errors
from nfp_jax import hlo
from nfp_jax import targets as targets_lib

CompileError = errors.CompileError  # raised here; defined in the leaf errors.py
# The one config model-autotune compiles with, for the kernels' structure only.
MODEL_AUTOTUNE_STRUCTURE = ('block_m:64 block_n:64 block_k:32 num_stages:1 '
                            'num_warps:4 num_ctas:1')


@dataclasses.dataclass(frozen=True)
class Tiling:
  """A tiling source: what it is called and how XLA is told to use it."""
  source: str
  placeholder: bool
  compiler_options: dict
  xla_flags: tuple = ()  # options that only work in XLA_FLAGS


def _proto_value(value) -> str:
  if isinstance(value, str):
    return json.dumps(value)
  return repr(value)


def target_config_text(target: targets_lib.Target) -> str:
  """The GpuTargetConfigProto (text format) of a deviceless GPU target."""
  if not (target.deviceless and target.platform == 'gpu'):
    raise CompileError(f'{target.name} is not a deviceless GPU target; choose '
                       f'one of {", ".join(targets_lib.names("gpu")[1:])}.')
  spec = target.spec
  gpu = spec.gpu
  info = dict(
      threads_per_block_limit=gpu['threads_per_block_limit'], threads_per_warp=32,
      shared_memory_per_block=gpu['shared_memory_per_block'],
      shared_memory_per_core=gpu['shared_memory_per_core'],
      threads_per_core_limit=gpu['threads_per_core_limit'],
      core_count=gpu['core_count'], fpus_per_core=gpu['fpus_per_core'],
      block_dim_limit_x=2147483647, block_dim_limit_y=65535,
      block_dim_limit_z=65535, memory_bandwidth=gpu['memory_bandwidth'],
      l2_cache_size=gpu['l2_cache_size'], clock_rate_ghz=gpu['clock_rate_ghz'],
      device_memory_size=gpu['device_memory_size'],
      shared_memory_per_block_optin=gpu['shared_memory_per_block_optin'],
      registers_per_core_limit=gpu['registers_per_core_limit'],
      registers_per_block_limit=gpu['registers_per_block_limit'],
      thread_dim_limit_x=1024, thread_dim_limit_y=1024, thread_dim_limit_z=64)
  major, minor = gpu['compute_capability']
  # sm_90a / sm_100a: the arch-specific features XLA's Triton GEMMs use.
  extension = ' feature_extension: ACCELERATED_FEATURES' if major >= 9 else ''
  lines = ['gpu_device_info {']
  lines += [f'  {key}: {_proto_value(value)}' for key, value in info.items()]
  lines.append(f'  cuda_compute_capability {{ major: {major} minor: {minor}'
               f'{extension} }}')
  lines.append('}')
  lines.append('platform_name: "CUDA"')
  dnn = gpu['dnn_version']
  lines.append(f'dnn_version_info {{ major: {dnn[0]} minor: {dnn[1]} '
               f'patch: {dnn[2]} }}')
  lines.append(f'device_description_str: {json.dumps(spec.description)}')
  return '\n'.join(lines) + '\n'


def parse_tiling(text: str | None, target: targets_lib.Target) -> Tiling:
  """The Tiling a `--tiling` string asks for on `target` (None: its default)."""
  text = text or target.default_tiling
  if target.platform != 'gpu':
    if text != 'xla-default':
      raise CompileError(f'XLA:{target.platform.upper()} has no tiling to choose; '
                         f'--tiling {text!r} only applies to GPU targets (use '
                         'xla-default).')
    return Tiling('xla-default', False, {})
  if text == 'xla-default':
    return Tiling('xla-default', target.deviceless, {})
  if text == 'cost-model':
    return Tiling('cost-model', False, {}, (
        '--xla_gpu_experimental_cost_model_gemm_tiling_options=top=1',))
  if text == 'model-autotune':
    # The kernels' structure (which GEMMs, fusions and reduces run) from one
    # fixed Triton config without split-K; pricing then re-tiles every GEMM by
    # autotune.py (XLA's search space and cuBLAS, priced per N). Not a
    # placeholder: the tiles priced are the ones the model's autotuner picks.
    return Tiling('model-autotune', False,
                  {'xla_gpu_override_gemm_autotuner': MODEL_AUTOTUNE_STRUCTURE})
  if text.startswith('autotune-file:'):
    path = pathlib.Path(text.split(':', 1)[1]).expanduser()
    if not path.is_file():
      raise CompileError(f'The autotune file {str(path)!r} does not exist.')
    return Tiling(f'autotune-file:{path}', False, {
        'xla_gpu_load_autotune_results_from': str(path.resolve()),
        'xla_gpu_require_complete_aot_autotune_results': True})
  if text.startswith('override:'):
    override = text.split(':', 1)[1].strip()
    keys = {'block_m', 'block_n', 'block_k', 'split_k', 'num_stages', 'num_warps',
            'num_ctas'}
    fields = dict(item.split(':', 1) for item in override.split() if ':' in item)
    if not fields or set(fields) - keys or not all(
        v.isdigit() for v in fields.values()):
      raise CompileError(f'--tiling override:{override!r} must be "key:int" pairs '
                         f'with keys from {", ".join(sorted(keys))}.')
    return Tiling(f'override:{override}', False,
                  {'xla_gpu_override_gemm_autotuner': override})
  raise CompileError(f'Unknown tiling source {text!r}; choose xla-default, '
                     'cost-model, model-autotune, autotune-file:PATH or '
                     'override:<config>.')


def _shardings(target: targets_lib.Target):
  """A sharding that places arrays on the (deviceless or local) target device."""
  import jax  # pylint: disable=g-import-not-at-top
  if target.deviceless and target.platform == 'gpu':
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    try:
      topology = topologies.get_topology_desc(
          platform='cuda', target_config=target_config_text(target),
          topology='1x1x1')
    except Exception as e:  # pylint: disable=broad-except
      raise CompileError(f'The CUDA plugin cannot compile for {target.name} here '
                         f'(install the gpu-aot extra): {str(e).splitlines()[0]}'
                         ) from None
    mesh = topologies.make_mesh(topology, (1,), ('x',))
  elif target.deviceless and target.platform == 'tpu':
    import numpy as np  # pylint: disable=g-import-not-at-top
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    tpu = target.spec.tpu
    try:
      topology = topologies.get_topology_desc(
          platform='tpu', topology_name=tpu['topology'],
          chip_config_name='default',
          chips_per_host_bounds=tpu['chips_per_host_bounds'], num_slices=1,
          wrap=(False, False, False))
    except Exception as e:  # pylint: disable=broad-except
      raise CompileError(f'libtpu cannot compile for {target.name} here '
                         f'(install the tpu-aot extra): {str(e).splitlines()[0]}'
                         ) from None
    mesh = jax.sharding.Mesh(np.array(topology.devices[:1]), ('x',))
  elif target.deviceless:
    raise CompileError(f'Deviceless compiles for {target.platform} targets '
                       f'such as {target.name} are not supported yet.')
  else:
    try:
      device = jax.devices(target.name)[0]
    except RuntimeError:
      raise CompileError(f'No local {target.name} device.') from None
    mesh = jax.sharding.Mesh([device], ('x',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _placed(tree, sharding):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)


def compile_function(fn, abstract_args, positions: int, target: targets_lib.Target,
                     tiling: Tiling, dump_dir=None,
                     extra_options: dict | None = None) -> hlo.CompiledHlo:
  """Compiles `fn(*abstract_args)` in this process (flags must already be set).

  `abstract_args` is a pytree of ShapeDtypeStructs; they are placed on the
  target. A dump (thunk sequence, LLVM IR) is written to `dump_dir`, or to a
  temporary folder that is removed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  sharding = _shardings(target)
  args = _placed(abstract_args, sharding)
  with tempfile.TemporaryDirectory(prefix='nfp_jax_dump_') as tmp:
    folder = pathlib.Path(dump_dir or tmp) / f'n{positions}'
    recorded = dict(tiling.compiler_options, **(extra_options or {}))
    # XLA:TPU's compiled text holds everything read (windows, cycles): its
    # dump is only written when asked for.
    dump = dump_dir or target.platform != 'tpu'
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lowered_at = time.perf_counter()
    try:
      compiled = lowered.compile(compiler_options=hlo.dump_options(
          recorded, folder) if dump else recorded)
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise CompileError(f'XLA could not compile for {target.name} with tiling '
                         f'{tiling.source}: {first}') from None
    done = time.perf_counter()
    return hlo.read_compiled(
        compiled, positions, folder if dump else None, target=target.name,
        tiling_source=tiling.source, placeholder=tiling.placeholder,
        compiler_options=recorded, xla_flags=tiling.xla_flags,
        lower_s=lowered_at - start, compile_s=done - lowered_at,
        device_kind=sharding.mesh.devices.flat[0].device_kind)


def _in_process(cfg, positions_list, target, tiling, dump_dir,
                extra_options=None) -> list:
  fn, state = blocks.abstract_forward(cfg)
  return [compile_function(fn, (state,) + tuple(blocks.abstract_inputs(cfg, n)),
                           n, target, tiling, dump_dir, extra_options)
          for n in positions_list]


def _cuda_plugin_kept_out() -> bool:
  """Whether this process keeps the CUDA plugin out (experiments/__init__.py
  does on a machine with no accelerator, so that it logs nothing)."""
  return sys.modules.get('jax_plugins.xla_cuda12', False) is None


def _needs_child(target: targets_lib.Target, tiling: Tiling) -> bool:
  if tiling.xla_flags or target.platform == 'tpu':
    return True  # libtpu holds a process-wide lock: never load it here
  if target.deviceless and target.platform == 'gpu':
    import jax  # pylint: disable=g-import-not-at-top
    return jax.config.jax_platforms != 'cpu' or _cuda_plugin_kept_out()
  return False


# A deviceless TPU compile loads libtpu, which takes a process lock and looks
# for TPU hosts: these let several children load it at once, offline.
_TPU_CHILD_ENV = dict(ALLOW_MULTIPLE_LIBTPU_LOAD='1',
                      TPU_WORKER_HOSTNAMES='localhost', TPU_SKIP_MDS_QUERY='1')


def check_tpu_extra(target: targets_lib.Target) -> None:
  """errors.ConfigError (one sentence) if a TPU target lacks libtpu here."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  if target.platform == 'tpu' and importlib.util.find_spec('libtpu') is None:
    raise errors.ConfigError(f'Target {target.name} needs libtpu: install the '
                             "tpu-aot extra (pip install -e '.[tpu-aot]').")


def _child_count(target: targets_lib.Target, count: int) -> int:
  """Children run at once: one per CPU for TPU compiles (each loads libtpu,
  so the N list is split over them), else one."""
  import os  # pylint: disable=g-import-not-at-top
  if target.platform != 'tpu':
    return 1
  return max(1, min(count, len(os.sched_getaffinity(0)) if hasattr(
      os, 'sched_getaffinity') else (os.cpu_count() or 1)))


def _in_child(cfg, positions_list, target, tiling_text, tiling, dump_dir,
              extra_options) -> list:
  """Runs the compiles in `python -m nfp_jax.compile` with the tiling's
  XLA_FLAGS; TPU compiles split the N list over up to one child per CPU."""
  import os  # pylint: disable=g-import-not-at-top
  positions_list = list(positions_list)
  env = dict(os.environ, XLA_FLAGS=' '.join(tiling.xla_flags),
             JAX_PLATFORMS='cpu' if target.deviceless or target.name == 'cpu'
             else '', TF_CPP_MIN_LOG_LEVEL='3')
  if target.platform == 'tpu':
    env.update(_TPU_CHILD_ENV)
  children = _child_count(target, len(positions_list))
  shares = [positions_list[i::children] for i in range(children)]
  procs = []
  for share in shares:
    request = dict(config=cfg.to_dict(), positions=share, target=target.name,
                   tiling=tiling_text,
                   dump_dir=str(dump_dir) if dump_dir else None,
                   extra_options=extra_options or {})
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', 'nfp_jax.compile'], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=pathlib.Path(__file__).resolve().parent.parent)
    procs.append((proc, json.dumps(request)))
  by_n = {}
  errors_seen = []
  for proc, request in procs:
    out, err = proc.communicate(request)
    if proc.returncode != 0:
      lines = [l for l in err.strip().splitlines() if l.strip()]
      errors_seen.append(lines[-1] if lines else 'The compile subprocess failed.')
      continue
    for r in json.loads(out):
      by_n[r['positions']] = hlo.CompiledHlo(**dict(r, xla_flags=tuple(r['xla_flags'])))
  if errors_seen:
    raise CompileError(errors_seen[0])
  return [by_n[n] for n in positions_list]


def compile_hlo_many(cfg: config_lib.BlockConfig, positions_list,
                     target: targets_lib.Target, tiling: str | None = None,
                     dump_dir=None,
                     extra_options: dict | None = None) -> list:
  """Compiles the forward of `cfg` at every N in `positions_list`.

  Args:
    cfg: the block.
    positions_list: the values of N.
    target: a local device or a deviceless spec-table target (targets.py).
    tiling: a tiling source (see the module docstring); None: the target's
      default.
    dump_dir: keep XLA's dump (one sub-folder per N) there.
    extra_options: more XLA options per compile (recorded), e.g.
      {'xla_gpu_enable_triton_gemm': False} for cuBLAS GEMMs.

  Returns:
    One CompiledHlo per N, in order.

  Raises:
    CompileError: for a target or tiling that cannot be used, or a failed compile.
  """
  parsed = parse_tiling(tiling, target)
  check_tpu_extra(target)
  if _needs_child(target, parsed):
    return _in_child(cfg, positions_list, target, tiling, parsed, dump_dir,
                     extra_options)
  return _in_process(cfg, positions_list, target, parsed, dump_dir, extra_options)


def compile_hlo(cfg: config_lib.BlockConfig, positions: int,
                target: targets_lib.Target, tiling: str | None = None,
                dump_dir=None,
                extra_options: dict | None = None) -> hlo.CompiledHlo:
  """Compiles the forward of `cfg` at N=positions; see compile_hlo_many."""
  return compile_hlo_many(cfg, [positions], target, tiling, dump_dir,
                          extra_options)[0]


def _child_main() -> None:
  """Child process: a JSON request on stdin, a JSON list of results on stdout."""
  import jax  # pylint: disable=g-import-not-at-top
  request = json.loads(sys.stdin.read())
  target = targets_lib.resolve(request['target'])
  if target.name != 'gpu':
    jax.config.update('jax_platforms', 'cpu')
  cfg = config_lib.BlockConfig(**request['config'])
  tiling = parse_tiling(request['tiling'], target)
  try:
    results = _in_process(cfg, request['positions'], target, tiling,
                          request['dump_dir'], request['extra_options'])
  except CompileError as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  json.dump([r.to_dict() for r in results], sys.stdout)


if __name__ == '__main__':
  _child_main()
