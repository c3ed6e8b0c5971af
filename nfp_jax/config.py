"""The configuration of one measured or predicted block, and its validation.

A `BlockConfig` holds everything that decides what is compiled: the module kind,
its shapes (resolved from a preset, explicit overrides and `scale`), dtypes and the
implementation choices. Errors a user can cause raise `ConfigError` with one
sentence; entry points turn it into exit code 2.
"""

import dataclasses
import hashlib
import itertools
import json
import math

from nfp_jax import errors
from nfp_jax import presets
from nfp_jax import routing

MODULES = ('linear', 'dense', 'moe', 'attention', 'layer', 'model')
MOE_IMPLS = ('gather', 'ragged', 'dense', 'tokamax')
MASKS = ('causal', 'block')
ATTN_IMPLS = ('einsum', 'dpa')
DTYPES = ('bfloat16', 'float32', 'float16')
SHAPE_FIELDS = ('d_model', 'd_ff', 'n_experts', 'top_k', 'n_shared_experts',
                'n_heads', 'n_kv_heads', 'head_dim', 'n_layers', 'vocab')


ConfigError = errors.ConfigError  # raised here; defined in the leaf errors.py

# Defaults that keep a flagless run of each module within a minute on a 2-core
# CPU: the model preset and width scale per module, and shape overrides (a
# default `model` keeps 4 of the preset's layers: compile time grows with
# depth and the layers are identical). Naming a model restores the preset.
DEFAULT_MODELS = {'dense': 'llama3-8b', 'moe': 'olmoe-1b-7b',
                  'attention': 'llama3-8b', 'layer': 'olmoe-1b-7b',
                  'model': 'llama3-8b'}
DEFAULT_SCALES = {'dense': 0.5, 'moe': 0.25, 'attention': 1.0, 'layer': 0.25,
                  'model': 0.125}
DEFAULT_OVERRIDES = {'model': {'n_layers': 4}}
# A `linear` block is one projection: without a model preset it has no default
# widths, and both must be given.
LINEAR_WIDTHS = ('d_model', 'd_ff')


def native_dtype(platform: str) -> str:
  """What dtype `auto` means on a platform: XLA:CPU converts bfloat16 matmuls
  to float32 on every call, so float32 there; bfloat16 on accelerators."""
  return 'float32' if platform == 'cpu' else 'bfloat16'


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """What is compiled: module kind, resolved shapes, dtypes, implementation."""
  module: str
  preset: str
  d_model: int
  d_ff: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  n_layers: int
  vocab: int
  rope_theta: float
  n_experts: int = 0
  top_k: int = 0
  n_shared_experts: int = 0
  param_dtype: str = 'bfloat16'
  dtype: str = 'bfloat16'
  moe_impl: str = 'gather'
  routing: str = 'learned'
  mask: str = 'causal'
  attn_impl: str = 'einsum'
  kv_len: int = 1024
  scale: float = 1.0
  seed: int = 0

  @property
  def is_moe(self) -> bool:
    """Whether the FFN of this block (or of its layers) is a mixture of experts."""
    return self.module == 'moe' or (
        self.module in ('layer', 'model') and self.n_experts > 0)

  @property
  def has_attention(self) -> bool:
    return self.module in ('attention', 'layer', 'model')

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def config_id(self, positions=()) -> str:
    """A stable hash of this configuration and the swept positions."""
    payload = json.dumps({'block': self.to_dict(), 'positions': list(positions)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _scaled(value: int, scale: float, name: str) -> int:
  scaled = int(math.floor(value * scale))
  if scaled < 1:
    raise ConfigError(f'--scale {scale} makes {name} zero (from {value}); '
                      'use a larger scale.')
  return scaled


def resolve(module: str, preset: str = 'tiny', *, scale: float = 1.0,
            overrides: dict | None = None, **choices) -> BlockConfig:
  """Builds a validated BlockConfig.

  Args:
    module: one of MODULES.
    preset: a name in presets.PRESETS.
    scale: shrinks widths (d_model, d_ff, head counts, vocab) for CPU runs;
      head_dim, the number of experts and top_k are kept.
    overrides: explicit shapes (SHAPE_FIELDS) that replace the preset's values
      after scaling; None values are ignored.
    **choices: the other BlockConfig fields (dtypes, implementations, routing,
      mask, kv_len, seed). `dtype` alone sets both compute and storage dtype
      unless `param_dtype` is also given.

  Raises:
    ConfigError: for anything that cannot be built.
  """
  if module not in MODULES:
    raise ConfigError(f'Unknown module {module!r}; choose one of {", ".join(MODULES)}.')
  if preset not in presets.PRESETS:
    raise ConfigError(f'Unknown model preset {preset!r}; choose one of '
                      f'{", ".join(sorted(presets.PRESETS))}.')
  if not 0 < scale <= 1:
    raise ConfigError(f'--scale must be in (0, 1], got {scale}.')
  p = presets.PRESETS[preset]
  shapes = dict(d_model=p.d_model, d_ff=p.d_ff, n_heads=p.n_heads,
                n_kv_heads=p.n_kv_heads, head_dim=p.head_dim,
                n_layers=p.n_layers, vocab=p.vocab, n_experts=p.n_experts,
                top_k=p.top_k, n_shared_experts=p.n_shared_experts)
  if scale != 1.0:
    for name in ('d_model', 'd_ff', 'vocab'):
      shapes[name] = _scaled(shapes[name], scale, name)
    # Head counts shrink to at least one head (head_dim is kept).
    for name in ('n_heads', 'n_kv_heads'):
      shapes[name] = max(1, int(math.floor(shapes[name] * scale)))
    # Keep the GQA group size an integer.
    while shapes['n_heads'] % shapes['n_kv_heads']:
      shapes['n_kv_heads'] -= 1
  for name, value in (overrides or {}).items():
    if value is None:
      continue
    if name not in SHAPE_FIELDS:
      raise ConfigError(f'Unknown shape field {name!r}.')
    if value < 0 or (value == 0 and name not in ('n_experts', 'n_shared_experts',
                                                    'top_k')):
      raise ConfigError(f'--{name} must be positive, got {value}.')
    shapes[name] = int(value)

  choices = {k: v for k, v in choices.items() if v is not None}
  if 'dtype' in choices and 'param_dtype' not in choices:
    choices['param_dtype'] = choices['dtype']
  cfg = BlockConfig(module=module, preset=preset, rope_theta=p.rope_theta,
                    scale=scale, **shapes, **choices)
  if 'mask' not in choices and p.diffusion:
    cfg = dataclasses.replace(cfg, mask='block')
  _validate(cfg)
  return cfg


def grid(modules, *, models=None, scales=None, dtypes=('auto',),
         platform: str = 'cpu', impls=('gather',), routings=('learned',),
         masks=(None,), attn_impls=('einsum',), kv_lens=(1024,),
         overrides: dict | None = None, param_dtype: str | None = None,
         seed: int = 0) -> list:
  """Every combination of the given values as validated BlockConfigs, in a
  stable order (the order of the arguments), without duplicates.

  Without `models`, each module takes its DEFAULT_MODELS preset at its
  DEFAULT_SCALES scale (unless `scales` is given) with its DEFAULT_OVERRIDES
  (unless `overrides` sets the field); with `models`, scale 1 and the presets
  as they are. A dtype 'auto' is the platform's native_dtype.
  """
  dtypes = [native_dtype(platform) if d == 'auto' else d for d in dtypes]
  configs = []
  for module in modules:
    module_overrides = dict(overrides or {})
    if module == 'linear' and not models:
      missing = [f'--{w}' for w in LINEAR_WIDTHS if module_overrides.get(w) is None]
      if missing:
        raise ConfigError('--module linear needs its widths, --d_model and '
                          '--d_ff (the input and output width of the '
                          f'projection), or a --model preset; missing '
                          f'{" and ".join(missing)}.')
    if not models:
      for name, value in DEFAULT_OVERRIDES.get(module, {}).items():
        if module_overrides.get(name) is None:
          module_overrides[name] = value
    module_scales = scales or [1.0 if models else DEFAULT_SCALES.get(module, 1.0)]
    for model, scale, dtype, impl, route, mask, attn_impl, kv_len in (
        itertools.product(models or [DEFAULT_MODELS.get(module, 'tiny')],
                          module_scales, dtypes, impls, routings, masks or [None],
                          attn_impls, kv_lens)):
      cfg = resolve(module, model, scale=scale, overrides=module_overrides,
                    dtype=dtype, param_dtype=param_dtype, moe_impl=impl,
                    routing=route, mask=mask, attn_impl=attn_impl,
                    kv_len=kv_len, seed=seed)
      if cfg not in configs:
        configs.append(cfg)
  return configs


def shard(configs: list, index: int, count: int) -> list:
  """Shard `index` of `count` of a grid: round-robin over the grid's order,
  which depends on its arguments only, so every configuration lands in exactly
  one shard, on any machine."""
  return configs[index::count]


def _validate(cfg: BlockConfig) -> None:
  for name in ('dtype', 'param_dtype'):
    if getattr(cfg, name) not in DTYPES:
      raise ConfigError(f'Unsupported {name} {getattr(cfg, name)!r}; choose one '
                        f'of {", ".join(DTYPES)}.')
  if cfg.moe_impl not in MOE_IMPLS:
    raise ConfigError(f'Unknown MoE implementation {cfg.moe_impl!r}; choose one '
                      f'of {", ".join(MOE_IMPLS)}.')
  if cfg.moe_impl == 'tokamax' and cfg.is_moe:
    import importlib.util  # pylint: disable=g-import-not-at-top
    if importlib.util.find_spec('tokamax') is None:
      raise ConfigError("--impl tokamax needs the tokamax package: install the "
                        "tpu-aot extra (pip install -e '.[tpu-aot]').")
  if cfg.mask not in MASKS:
    raise ConfigError(f'Unknown mask {cfg.mask!r}; choose one of {", ".join(MASKS)}.')
  if cfg.attn_impl not in ATTN_IMPLS:
    raise ConfigError(f'Unknown attention implementation {cfg.attn_impl!r}; '
                      f'choose one of {", ".join(ATTN_IMPLS)}.')
  if cfg.kv_len < 1:
    raise ConfigError(f'--kv_len must be at least 1, got {cfg.kv_len}.')
  if cfg.n_heads % cfg.n_kv_heads:
    raise ConfigError(f'n_heads ({cfg.n_heads}) must be a multiple of n_kv_heads '
                      f'({cfg.n_kv_heads}).')
  if cfg.module == 'moe' and cfg.n_experts < 1:
    raise ConfigError(f'Preset {cfg.preset!r} has no experts; pass --n_experts '
                      'and --top_k to build an MoE block from it.')
  if cfg.is_moe:
    if not 1 <= cfg.top_k <= cfg.n_experts:
      raise ConfigError(f'--top_k must be between 1 and the number of experts '
                        f'({cfg.n_experts}), got {cfg.top_k}.')
  spec = routing.parse(cfg.routing)
  if spec.kind == 'trace' and cfg.is_moe:
    routing.load_trace(spec.path, cfg.n_experts, cfg.top_k)  # readable, in range
