"""The absl entry points of nfp_jax (`python -m experiments.<name>`).

Python imports this package before any entry point, so it is where the process
is set up before JAX loads. On a machine with no accelerator (no NVIDIA driver,
no TPU device) but with the gpu-aot or tpu-aot extra installed, JAX would load
the CUDA plugin (its libraries log "cudart_stub ... Could not find cuda
drivers" several times, and its initialize() logs a traceback) and try libtpu
(which logs host lookup errors), though only the CPU can run here. So, there
and only there:
  * the CUDA plugin's modules are kept out of the process: deviceless GPU
    compiles then run in a child process (nfp_jax.compile), which loads the
    plugin and keeps its log to itself;
  * JAX_PLATFORMS defaults to cpu (a value the user set is kept).
A machine with a GPU or TPU is left as it is.
"""

import ctypes.util
import glob
import logging
import os
import sys

_CUDA_PLUGIN_MODULES = ('jax_cuda12_plugin', 'jax_cuda13_plugin',
                        'jax_plugins.xla_cuda12', 'jax_plugins.xla_cuda13')


def _has_accelerator() -> bool:
  return bool(ctypes.util.find_library('cuda') or glob.glob('/dev/nvidia[0-9]*')
              or glob.glob('/dev/accel[0-9]*') or glob.glob('/dev/vfio/[0-9]*'))


if 'jax' not in sys.modules and not _has_accelerator():
  for _name in _CUDA_PLUGIN_MODULES:
    sys.modules.setdefault(_name, None)
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  # JAX's plugin discovery still finds the plugin's entry point and logs that
  # it cannot be imported; the backend actually used is printed and recorded.
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.CRITICAL)
