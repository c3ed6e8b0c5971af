"""Running an entry point as a user would: `python -m experiments.<name>`."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module: str, args, env, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', module] + list(args), cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def _has(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False


# Tests that compile for NVIDIA targets need the gpu-aot extra; without it they
# are skipped (CI installs every extra).
requires_gpu_aot = pytest.mark.skipif(
    not _has('jax_plugins.xla_cuda12'),
    reason="deviceless NVIDIA compiles need pip install -e '.[gpu-aot]'")

# Tests that compile for TPU targets need the tpu-aot extra (libtpu).
requires_tpu_aot = pytest.mark.skipif(
    not _has('libtpu'),
    reason="deviceless TPU compiles need pip install -e '.[tpu-aot]'")
