"""Targets: one name resolved once, with its platform, spec and default tiling."""

import pytest

from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import targets


def test_local_targets():
  cpu = targets.resolve('cpu')
  assert (cpu.platform, cpu.deviceless, cpu.spec) == ('cpu', False, None)
  assert cpu.default_tiling == 'xla-default' and cpu.native_dtype == 'float32'
  gpu = targets.resolve('gpu')
  assert gpu.jax_platform == 'cuda' and not gpu.deviceless


def test_spec_table_gpus_are_deviceless_with_cost_model_tiles():
  h100 = targets.resolve('h100')
  assert h100.platform == 'gpu' and h100.deviceless
  assert h100.spec is hardware.SPECS['h100']
  assert h100.default_tiling == 'cost-model' and h100.native_dtype == 'bfloat16'
  assert 'h100' in targets.names('gpu') and 'h100' not in targets.names('cpu')
  assert targets.names()[:2] == ('cpu', 'gpu')


def test_every_named_target_resolves_to_its_platform():
  for platform in ('cpu', 'gpu', 'tpu'):
    for name in targets.names(platform):
      assert targets.resolve(name).platform == platform


@pytest.mark.parametrize('name', ['mi300', 'H100', ''])
def test_unknown_target_is_one_sentence(name):
  with pytest.raises(errors.ConfigError) as error:
    targets.resolve(name)
  text = str(error.value)
  assert '\n' not in text and 'h100' in text and text.endswith('.')


def test_spec_without_compile_fields_is_not_a_target():
  balance_only = [n for n, s in hardware.SPECS.items() if not s.gpu and not s.tpu]
  for name in balance_only:
    with pytest.raises(errors.ConfigError):
      targets.resolve(name)
