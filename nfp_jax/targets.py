"""Where a block is compiled and priced: one `Target`, resolved once from a name.

A target is either a local device (`cpu`, `gpu`: compiled for and measured on
the device JAX sees here) or a spec-table accelerator (hardware.SPECS) compiled
deviceless: a spec with GPU fields is an NVIDIA target (XLA:GPU from a
GpuTargetConfigProto), one with TPU fields a TPU target (XLA:TPU from libtpu's
topology). Everything downstream (compile, pricing, prediction, the CLIs) takes
the resolved Target, so a name is checked in exactly one place.
"""

import dataclasses

from nfp_jax import config
from nfp_jax import errors
from nfp_jax import hardware

LOCAL = ('cpu', 'gpu')
_JAX_PLATFORMS = {'cpu': 'cpu', 'gpu': 'cuda', 'tpu': 'tpu'}


@dataclasses.dataclass(frozen=True)
class Target:
  """A compile-and-price target.

  Attributes:
    name: 'cpu', 'gpu' or a spec-table name ('h100', ...).
    platform: 'cpu', 'gpu' or 'tpu'.
    deviceless: compiled with no such device present (spec-table targets).
    spec: the spec-table entry (None for a local device, which is measured).
    default_tiling: the tiling source used when none is asked for:
      model-autotune on deviceless GPUs (the autotuner cannot run without a
      GPU, its fallback is a placeholder; model-autotune does what it does with
      the principle as its clock, and scored better than XLA's cost-model tiles
      on the development anchors: within x2 on 46% vs 23% of every 80th
      aiconfigurator curve, median |log2 error| 1.34 vs 2.0); what XLA does
      everywhere else (XLA:CPU and XLA:TPU choose their own tiles; a local GPU
      autotunes).
  """
  name: str
  platform: str
  deviceless: bool
  spec: hardware.HardwareSpec | None
  default_tiling: str

  @property
  def jax_platform(self) -> str:
    """The platform name JAX and its plugins use ('cuda' for NVIDIA GPUs)."""
    return _JAX_PLATFORMS[self.platform]

  @property
  def native_dtype(self) -> str:
    """What `--dtype auto` means here (config.native_dtype)."""
    return config.native_dtype(self.platform)


def _spec_platform(spec: hardware.HardwareSpec) -> str | None:
  if spec.gpu:
    return 'gpu'
  if getattr(spec, 'tpu', None):
    return 'tpu'
  return None  # in the spec table for its balance only: no deviceless compile


def names(platform: str | None = None) -> tuple:
  """Known target names (of one platform if given): local ones first."""
  spec_names = tuple(name for name, spec in hardware.SPECS.items()
                     if _spec_platform(spec))
  every = LOCAL + spec_names
  if platform is None:
    return every
  return tuple(n for n in every if resolve(n).platform == platform)


def resolve(name: str) -> Target:
  """The Target of a name; errors.ConfigError (one sentence) if unknown."""
  if name in LOCAL:
    return Target(name, name, False, None, 'xla-default')
  spec = hardware.SPECS.get(name)
  platform = _spec_platform(spec) if spec else None
  if platform is None:
    raise errors.ConfigError(f'Unknown target {name!r}; choose one of '
                             f'{", ".join(names())}.')
  return Target(name, platform, True, spec,
                'model-autotune' if platform == 'gpu' else 'xla-default')
