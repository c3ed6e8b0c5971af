"""Targets: one name resolved once, with its platform, spec and default tiling."""

import os
import pathlib
import subprocess
import sys

import pytest

from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import targets

ROOT = pathlib.Path(__file__).resolve().parent.parent


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
  assert h100.default_tiling == 'model-autotune' and h100.native_dtype == 'bfloat16'
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



def test_entry_points_keep_an_unusable_cuda_plugin_out():
  """On a machine with no accelerator, importing the entry points' package
  first keeps the CUDA plugin out: JAX runs on the CPU and logs nothing of it,
  and compile.py knows to compile deviceless GPU targets in a child process."""
  import experiments  # pylint: disable=g-import-not-at-top
  if experiments._has_accelerator():  # pylint: disable=protected-access
    pytest.skip('this machine has an accelerator: nothing is kept out')
  code = ('import experiments, jax; print(jax.devices()[0].platform); '
          'from nfp_jax import compile; print(compile._cuda_plugin_kept_out())')
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, env=env, cwd=ROOT, check=True)
  assert proc.stdout.split() == ['cpu', 'True']
  assert 'cudart_stub' not in proc.stderr and 'Traceback' not in proc.stderr
