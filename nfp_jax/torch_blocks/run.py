"""Forwards of a PyTorch twin prepared for the shared timing harness.

`prepare` builds the twin once (weights and KV cache copied from the Flax block,
so both frameworks run on the same numbers), then gives for every N a call that
runs one forward under `torch.inference_mode` and returns when its output is
ready (the CPU runs PyTorch ops synchronously), plus what PyTorch ran for it.

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
import time
from typing import Any, Callable, Sequence

import torch

from nfp_jax.torch_blocks import modules

VARIANTS = ('eager', 'compile')
_TOP_KERNELS = 8


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


def kernel_identity(call: Callable[[], Any]) -> list:
  """The ops of one call, by self CPU time, as seen by torch.profiler.

  Returns up to the top few as dicts {op, calls, self_share}: for eager, the
  ATen ops (aten::mm, aten::_grouped_mm, aten::_scaled_dot_product_flash_
  attention_for_cpu ...); for torch.compile, inductor's generated kernels
  (cpp_fused_*) and the extern ATen calls it kept.
  """
  activities = [torch.profiler.ProfilerActivity.CPU]
  with torch.profiler.profile(activities=activities) as prof:
    call()
  self_us = collections.Counter()
  calls = collections.Counter()
  for event in prof.events():
    self_us[event.name] += event.self_cpu_time_total
    calls[event.name] += 1
  total = sum(self_us.values()) or 1.0
  return [dict(op=name, calls=calls[name], self_share=round(us / total, 3))
          for name, us in self_us.most_common(_TOP_KERNELS) if us > 0]


def _timed_call(module, args):
  def call():
    with torch.inference_mode():
      return module(*args)
  return call


def _error_text(error: BaseException) -> str:
  text = f'{type(error).__name__}: {error}'.strip()
  return text if len(text) < 2000 else text[:2000] + ' ...'


def prepare(cfg, positions: Sequence[int], variant: str = 'eager', *,
            progress: Callable[[str], None] = lambda _: None
            ) -> tuple[dict[int, PreparedForward], dict[int, str]]:
  """Prepares the twin's forward at every N of `positions` (which starts at 1).

  Returns:
    (prepared, failed): N -> PreparedForward for the N that ran, and
    N -> error text for those that did not (the sweep goes on without them).

  Raises:
    the error of positions[0], since every ratio is relative to T(1).
  """
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r}; choose one of {VARIANTS}.')
  twin = modules.build(cfg).eval()
  module = twin
  if variant == 'compile':
    torch._dynamo.reset()  # pylint: disable=protected-access
    module = torch.compile(twin, dynamic=False, fullgraph=True)
  prepared, failed = {}, {}
  for n in positions:
    try:
      call = _timed_call(module, modules.inputs(cfg, n, max(positions)))
      start = time.perf_counter()
      # One graph per N: lift the recompile limit (8) while compiling them.
      with torch._dynamo.config.patch(recompile_limit=len(positions) + 1):  # pylint: disable=protected-access
        call()
      first_call_s = time.perf_counter() - start
      prepared[n] = PreparedForward(call, first_call_s, kernel_identity(call))
      progress(f'N={n}: first call {first_call_s:.2f} s')
    except Exception as e:  # pylint: disable=broad-except
      if n == positions[0]:
        raise
      failed[n] = _error_text(e)
      progress(f'N={n}: failed: {failed[n][:200]}')
  return prepared, failed
