"""Forwards of a PyTorch twin prepared for the shared timing harness.

`twin` builds the twin once (weights and KV cache copied from the Flax block,
so both frameworks run on the same numbers); `prepare` gives for one N a call
that runs one forward under `torch.inference_mode` and returns when its output
is ready (the CPU runs PyTorch ops synchronously), plus what PyTorch ran for it.

Variants:
  eager    the module as is: one ATen op at a time.
  compile  `torch.compile(module, dynamic=False, fullgraph=True)`: one static
           graph per N, as XLA compiles one executable per N (dynamic=False
           keeps PyTorch from switching to a symbolic-N graph after the second
           shape; fullgraph=True makes a graph break an error instead of a
           silently partial compilation). Inductor generates C++ for the CPU,
           which needs a C++ compiler.
"""

import collections
import dataclasses
import os
import platform
import re
import time
from typing import Any, Callable

import numpy as np
import torch

from nfp_jax.torch_blocks import modules

VARIANTS = ('eager', 'compile')
_TOP_KERNELS = 8
_MAX_GRAPHS = 1024
_COMPILED_GRAPH = re.compile(r'## Call CompiledFxGraph \w+ ##')
_COMPILED_REGION = re.compile(r'Torch-Compiled Region: [\d/]+')


@dataclasses.dataclass(frozen=True)
class PreparedForward:
  """One N's forward, ready to be timed."""
  call: Callable[[], Any]
  first_call_s: float  # the first call: compilation included for `compile`
  kernels: list  # the ops that took the most self time in one profiled call


def xla_like_threads() -> int:
  """The intra-op thread count XLA:CPU uses: the CPUs this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def set_threads(threads: int) -> None:
  """Sets PyTorch's intra-op threads (process-wide); recorded by `provenance`."""
  torch.set_num_threads(threads)


def provenance() -> dict:
  """PyTorch's version, threads and CPU backends, for result records."""
  return dict(
      torch=torch.__version__, torch_threads=torch.get_num_threads(),
      torch_interop_threads=torch.get_num_interop_threads(),
      torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
      torch_mkl=torch.backends.mkl.is_available(),
      torch_mkldnn=torch.backends.mkldnn.is_available(),
      torch_parallel=torch.__config__.parallel_info().splitlines()[-1].strip(),
      cxx_compiler=os.environ.get('CXX', 'c++'), machine=platform.machine())


def kernel_identity(call: Callable[[], Any], calls: int = 5) -> list:
  """The ops of a forward, by self CPU time, as torch.profiler sees them.

  Profiles `calls` calls one by one and takes each op's median self time over
  them: on a shared machine one call can lose tens of ms to a descheduled
  OpenMP thread, and that stall lands on whichever op was running. Returns the
  top few ops as dicts {op, calls (per forward), self_share}: for eager, the
  ATen ops (aten::mm, aten::_grouped_mm,
  aten::_scaled_dot_product_flash_attention_for_cpu ...); for torch.compile,
  the call of inductor's generated C++ (one entry for all its fused kernels)
  and the extern ATen ops it kept (aten::mm ...).
  """
  per_call = []
  counts = collections.Counter()
  for _ in range(calls):
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
      call()
    self_us = collections.Counter()
    for event in prof.events():
      name = _COMPILED_GRAPH.sub('inductor C++ graph', event.name)
      name = _COMPILED_REGION.sub('Torch-Compiled Region', name)
      self_us[name] += event.self_cpu_time_total
      counts[name] += 1
    per_call.append(self_us)
  median_us = {name: float(np.median([c[name] for c in per_call]))
               for name in counts}
  total = sum(median_us.values()) or 1.0
  top = sorted(median_us, key=median_us.get, reverse=True)[:_TOP_KERNELS]
  return [dict(op=name, calls=counts[name] // calls,
               self_share=round(median_us[name] / total, 3))
          for name in top if median_us[name] > 0]


def twin(cfg, variant: str = 'eager') -> torch.nn.Module:
  """The block's twin, compiled for `variant` 'compile' (lazily: at each
  new N's first call)."""
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r}; choose one of {VARIANTS}.')
  module = modules.build(cfg).eval()
  if variant == 'compile':
    torch._dynamo.reset()  # pylint: disable=protected-access
    module = torch.compile(module, dynamic=False, fullgraph=True)
  return module


def prepare(module: torch.nn.Module, cfg, positions: int,
            max_positions: int | None = None) -> PreparedForward:
  """The forward of `module` at N=positions, run once (compiling it if the
  module is compiled) and profiled.

  max_positions: the largest N of the sweep, so forced routing is a prefix
  of the same draw at every N (as nfp_jax.blocks.inputs).
  """
  args = modules.inputs(cfg, positions, max_positions)

  def call():
    with torch.inference_mode():
      return module(*args)

  start = time.perf_counter()
  # One static graph per N: lift the recompile limit (8) while compiling.
  with torch._dynamo.config.patch(recompile_limit=_MAX_GRAPHS):  # pylint: disable=protected-access
    call()
  first_call_s = time.perf_counter() - start
  return PreparedForward(call, first_call_s, kernel_identity(call))
