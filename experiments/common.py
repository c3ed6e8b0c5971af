"""Flags and plumbing shared by the entry points (absl lives only in experiments/).

List-valued flags (--module, --model, --dtype, ...) form a grid: every
combination is one configuration with its own config_id.
"""

import datetime
import os
import pathlib
import sys

from absl import app
from absl import flags

from nfp_jax import boundary
from nfp_jax import config
from nfp_jax import errors
from nfp_jax import measure
from nfp_jax import plan
from nfp_jax import results
from nfp_jax import targets

FLAGS = flags.FLAGS

DEFAULT_POSITIONS = ','.join(map(str, boundary.DEFAULT_POSITIONS))


def define_block_flags(default_module: str | None = 'moe') -> None:
  """Flags that describe a block (grid-valued where it makes sense).

  Entry points define them at import; a process that imports two of them (the
  tests) keeps the first definition instead of failing.
  """
  if 'module' in FLAGS:
    return
  flags.DEFINE_list('module', default_module,
                    f'Block(s) to run: {", ".join(config.MODULES)}.')
  flags.DEFINE_list('model', None,
                    'Model preset(s); default per module (config.DEFAULT_MODELS).')
  flags.DEFINE_list('scale', None, 'Width scale(s) in (0, 1]; default per module.')
  for name in config.SHAPE_FIELDS:
    flags.DEFINE_integer(name, None, f'Override the preset\'s {name}.')
  flags.DEFINE_list('impl', ['gather'], 'MoE implementation(s): '
                    f'{", ".join(config.MOE_IMPLS)}.')
  flags.DEFINE_list('routing', ['learned'],
                    'MoE routing: learned, uniform, zipf:<s>, trace:<file>.')
  flags.DEFINE_list('mask', None, 'Attention mask(s): causal or block; default '
                    'causal (block for diffusion presets).')
  flags.DEFINE_list('attn_impl', ['einsum'], 'Attention implementation(s): einsum, dpa.')
  flags.DEFINE_list('kv_len', ['1024'], 'KV cache length(s).')
  flags.DEFINE_list('dtype', ['auto'], 'Compute (and storage) dtype(s): '
                    f'{", ".join(config.DTYPES)}, or auto: the dtype the backend '
                    'computes natively (float32 on cpu, where XLA converts '
                    'bfloat16 matmuls to float32; bfloat16 elsewhere).')
  flags.DEFINE_string('param_dtype', None, 'Storage dtype if not --dtype.')
  flags.DEFINE_integer('seed', 0, 'Seed of weights, inputs, routing and timing order.')


def define_target_flags() -> None:
  """--positions, --target and --tiling of the deviceless tools (predict, tiling)."""
  flags.DEFINE_string('positions', '1,2,4,8,16,32,64,128,256,512,1024,2048',
                      'Comma list of N, increasing; 1 is added if missing.')
  flags.DEFINE_string('target', 'h100', 'cpu (this machine) or a deviceless '
                      'NVIDIA or TPU target: '
                      f'{", ".join(targets.names()[2:])}.')
  flags.DEFINE_string('tiling', None, 'Tiling source on GPU targets: xla-default, '
                      'cost-model, model-autotune (default), autotune-file:PATH, '
                      'override:<config>; on cpu only xla-default.')


def define_sweep_flags() -> None:
  """Flags of a measured sweep (as define_block_flags, defined once)."""
  if 'repeats' in FLAGS:
    return
  flags.DEFINE_string('positions', DEFAULT_POSITIONS,
                      'Comma list of N, increasing; 1 is added if missing.')
  flags.DEFINE_float('tolerance', 0.1, 'The tau shown in tables (0.05, 0.1 and '
                     '0.2 are always computed).')
  flags.DEFINE_integer('repeats', None, 'A fixed number of timed rounds (each times '
                       'every N once); default: adaptive rounds (--min_rounds, '
                       '--max_rounds, --time_budget_s).')
  flags.DEFINE_integer('min_rounds', 15, 'Rounds of every N before adapting.')
  flags.DEFINE_integer('max_rounds', 200, 'Most rounds; after --min_rounds only '
                       'the N whose boundary is undecided are timed (with N=1).')
  flags.DEFINE_float('time_budget_s', 20.0, 'Seconds of timing after which '
                     'adaptive rounds stop (a boundary not decided by then is '
                     'reported unresolved).')
  flags.DEFINE_integer('warmup', 2, 'Untimed calls per N before the rounds.')
  flags.DEFINE_string('out', None, 'Output folder (default: a new timestamped '
                      'folder under results/).')
  flags.DEFINE_string('backend', None, 'JAX backend to measure on (cpu, gpu, ...); '
                      'default: JAX\'s default.')
  flags.DEFINE_integer('shard_index', 0, 'This job\'s shard of the grid (a SLURM '
                       'array index or a Kubernetes job completion index).')
  flags.DEFINE_integer('num_shards', 1, 'Shards the grid is split into.')


def _checked(check):
  """An absl flag validator from a library check that raises errors.Error."""
  def validator(value):
    if value is not None:
      try:
        check(value)
      except errors.Error as e:
        raise flags.ValidationError(str(e)) from None
    return True
  return validator


def define_plan_flags(required: bool = False) -> None:
  """--accept and --draft_cost (nfp_jax.plan), checked when flags are parsed,
  so a bad value fails before anything is measured (defined once). An entry
  point that requires --accept checks it in main (require_accept), so that
  --only_check_args still parses without it."""
  if 'accept' in FLAGS:
    return
  flags.DEFINE_string('accept', None, 'Acceptance model: chain:<alpha> (a drafted '
                      'chain, each token accepted with probability alpha) or '
                      'table:<csv of positions,tokens>; '
                      + ('required.' if required else 'prints N* and its speedup.'))
  flags.DEFINE_float('draft_cost', 0.0, 'Cost of drafting one token relative to '
                     'T(1) of the verified model (0: self-speculation, Jacobi, '
                     'diffusion).')
  flags.register_validator('accept', _checked(plan.parse_accept))
  flags.register_validator('draft_cost', _checked(plan.check_draft_cost))


def require_accept():
  """The nfp_jax.plan.Acceptance of --accept; one sentence if it is missing."""
  if not FLAGS.accept:
    raise UsageError('--accept is required: chain:<alpha> or table:<csv of '
                     'positions,tokens>.')
  return plan.parse_accept(FLAGS.accept)


def print_plan(record: dict, tau: float = 0.1) -> None:
  """With --accept: one line, N* and its speedup on the curve of a sweep
  summary or a prediction (nfp_jax.plan). Called once the results are
  written: a table that lacks a swept N prints its sentence on stderr and
  the run goes on (a grid keeps measuring)."""
  if FLAGS.accept:
    try:
      print(plan.summary_line(plan.plan(plan.curve_from_record(record),
                                        plan.parse_accept(FLAGS.accept),
                                        FLAGS.draft_cost, tau)))
    except errors.Error as e:
      print(f'plan: {e}', file=sys.stderr)


class UsageError(Exception):
  """Bad input: one sentence, exit code 2."""


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def run_entry_point(main) -> None:
  """app.run with bad flags, UsageError and the library's user errors
  (errors.Error: a bad configuration, target or compile request) as one
  sentence, exit 2."""
  def parse(argv):
    try:
      return FLAGS(argv)
    except flags.Error as e:
      fail(str(e).splitlines()[0].rstrip('.') + '.')

  def guarded(argv):
    try:
      return main(argv)
    except (UsageError, errors.Error) as e:
      fail(str(e))

  app.run(guarded, flags_parser=parse)


def parse_positions(text: str) -> list[int]:
  """The --positions flag as a list of N (boundary.check_positions)."""
  try:
    positions = [int(p) for p in text.split(',') if p.strip()]
  except ValueError:
    raise UsageError(f'--positions must be a comma list of integers, got {text!r}.') from None
  try:
    return boundary.check_positions(positions)
  except errors.ConfigError as e:
    raise UsageError(f'--positions: {e}') from None


def parse_tolerance(tau: float) -> float:
  try:
    boundary.taus(tau)
  except errors.ConfigError as e:
    raise UsageError(f'--tolerance: {e}') from None
  return tau


def _numbers(values, cast, name):
  try:
    return [cast(v) for v in values]
  except ValueError:
    raise UsageError(f'--{name} must be a comma list of numbers, got '
                     f'{",".join(values)!r}.') from None


def block_configs(platform: str = 'cpu') -> list:
  """The grid of BlockConfigs the block flags describe (config.grid)."""
  return config.grid(
      FLAGS.module, models=FLAGS.model,
      scales=_numbers(FLAGS.scale, float, 'scale') if FLAGS.scale else None,
      dtypes=FLAGS.dtype, platform=platform, impls=FLAGS.impl,
      routings=FLAGS.routing, masks=FLAGS.mask or [None],
      attn_impls=FLAGS.attn_impl, kv_lens=_numbers(FLAGS.kv_len, int, 'kv_len'),
      overrides={name: getattr(FLAGS, name) for name in config.SHAPE_FIELDS},
      param_dtype=FLAGS.param_dtype, seed=FLAGS.seed)


def shard(configs: list) -> list:
  """The configurations of shard --shard_index of --num_shards (config.shard)."""
  if FLAGS.num_shards < 1:
    raise UsageError(f'--num_shards must be at least 1, got {FLAGS.num_shards}.')
  if not 0 <= FLAGS.shard_index < FLAGS.num_shards:
    raise UsageError(f'--shard_index must be in [0, {FLAGS.num_shards}), got '
                     f'{FLAGS.shard_index}.')
  return config.shard(configs, FLAGS.shard_index, FLAGS.num_shards)


def output_folder(out: str | None, label: str) -> pathlib.Path:
  """Creates (or reuses) the output folder; one sentence if it cannot be written."""
  if out is None:
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = os.path.join('results', f'{stamp}-{label}')
  path = pathlib.Path(out)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f'.write-test-{os.getpid()}'
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise UsageError(f'Cannot write to --out {out}: {e.strerror or e}.') from None
  return path


def device(backend: str | None):
  """The device to measure on; selecting a backend must precede JAX's first use."""
  import jax  # pylint: disable=g-import-not-at-top
  if backend:
    try:
      return jax.devices(backend)[0]
    except RuntimeError as e:
      raise UsageError(f'Backend {backend!r} is not available here: '
                       f'{str(e).splitlines()[0]}') from None
  return jax.devices()[0]


def target(name: str):
  """The targets.Target of a --target flag; one sentence if unknown."""
  try:
    return targets.resolve(name)
  except errors.ConfigError as e:
    raise UsageError(str(e).replace('Unknown target', 'Unknown --target', 1)
                     ) from None


def no_arguments(argv) -> None:
  """Entry points take flags only."""
  if len(argv) > 1:
    raise UsageError(f'Unexpected argument {argv[1]!r}; flags only.')


def write_out(path: str, payload: dict) -> None:
  """Writes an --out JSON file; one sentence if it cannot be written."""
  try:
    results.write_json(path, payload)
  except OSError as e:
    raise UsageError(f'Cannot write --out {path}: {e.strerror or e}.') from None
  print(f'\nwrote {path}', file=sys.stderr)


def round_plan() -> measure.RoundPlan:
  """The rounds asked for: --repeats fixed, else adaptive; UsageError (one
  sentence) for a plan that cannot run."""
  if FLAGS.repeats is not None:
    if FLAGS.repeats < 3:
      raise UsageError(f'--repeats must be at least 3, got {FLAGS.repeats}.')
    return measure.RoundPlan.fixed(FLAGS.repeats)
  try:
    return measure.RoundPlan(FLAGS.min_rounds, FLAGS.max_rounds,
                             FLAGS.time_budget_s).checked()
  except errors.ConfigError as e:
    raise UsageError(str(e)) from None


def parse_sweep_flags(argv) -> tuple[list[int], float, measure.RoundPlan]:
  """(positions, tolerance, round plan) of the sweep flags, checked with the
  other sweep flags that need no device (no positional arguments)."""
  no_arguments(argv)
  positions = parse_positions(FLAGS.positions)
  tau = parse_tolerance(FLAGS.tolerance)
  return positions, tau, round_plan()
