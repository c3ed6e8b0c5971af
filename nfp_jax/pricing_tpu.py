"""The principle on XLA:TPU: each fusion priced from the windows XLA chose.

A matmul fusion (`tpu_conv`, hlo_tpu.py) on a spec-table TPU (hardware.SPECS
[...].tpu):
  * compute: every matmul inside at the MXU rate on padded shapes. The rows
    (positions) are padded to the sublane tile of the layout (8 rows; 16 for
    a 2-byte type, which packs pairs), contraction and features to the MXU
    dimension d (128 through v5p, 256 on v6e). An MXU holds a d x d weight
    tile and streams the rows through it, and loading a weight tile takes as
    long as streaming d rows, so a weight tile costs at least d row-steps: the
    rows count as max(padded rows, d). Time = 2 * batch * rows * K * F / peak.
  * memory: every operand in HBM read once (VMEM operands, memory space
    S(1), were brought in by a copy that is priced itself) and the output
    written; weights again for every further output window along the rows
    (the kernel window is streamed from HBM once per iteration, so a second
    window of rows streams the weights again).
  * fixed cost: the pipeline prologue. The windows are double-buffered, so the
    DMA of the first kernel and input windows is not overlapped with compute:
    (kernel window + input window bytes) / HBM bandwidth, from the spec table
    (the kernel window is left out when the weights are already in VMEM).
  Time = max(memory, compute) + prologue.
A ragged dot run as a Mosaic kernel (jax.lax.ragged_dot, tokamax.ragged_dot)
is priced as one matmul per group of rows, reading only the weights of the
groups that have rows (_price_ragged). Other fusions, copies and custom calls
stream their HBM bytes. A copy whose result the program does not use is the
cross-program prefetch refilled for the next call: it stands in for the next
call's prefetch, which the first copy of the program already priced, so it
costs nothing here.

Nothing here reads the compiler's own estimate (estimated_cycles,
optimal_seconds): predict.py puts that beside the principle, as a column.
"""

import math

from nfp_jax import hlo_tpu
from nfp_jax import principle


def _pad(value: int, to: int) -> int:
  return -(-value // to) * to


def sublane_rows(dtype: str, spec_tpu: dict) -> int:
  """Rows of a layout tile for an element type: 8 for 4-byte types; 2-byte
  types pack pairs (T(8,128)(2,1)), so 16 rows; 1-byte types 32."""
  size = hlo_tpu._ELEMENT_BYTES.get(dtype, 4)  # pylint: disable=protected-access
  return spec_tpu['sublane'] * max(1, 4 // size)


def dot_compute(dot: hlo_tpu.Dot, spec_tpu: dict, peak_flops: float) -> tuple:
  """(padded FLOPs, seconds, row passes) of one matmul on the MXUs."""
  d = spec_tpu['mxu_dim']
  rows = max(_pad(dot.rows, sublane_rows(dot.dtype, spec_tpu)), d)
  flops = 2.0 * dot.batch * rows * _pad(dot.contraction, d) * _pad(dot.features, d)
  return flops, flops / peak_flops, -(-dot.rows // d)


def _window_bytes(bounds, tile_elems: int, element_bytes: int) -> int:
  return math.prod(bounds) * tile_elems * element_bytes if bounds else 0


def hbm_bytes(fusion: hlo_tpu.Fusion) -> int:
  """Bytes a fusion moves to or from HBM: operands not in VMEM, and its
  output unless that lives in VMEM. Matmuls, reductions and custom calls read
  their operands whole; other fusions (elementwise, slices, gathers, copies)
  read at most as much of an operand as they write (principle.kernel_bytes).
  A dynamic-update-slice fusion (in place) moves its update only; a while
  loop moves its body's bytes per iteration."""
  if fusion.opcode == 'while':
    # Its body's work per iteration, trip_count times (once when unknown);
    # the loop state itself is not copied.
    return (fusion.trip_count or 1) * sum(hbm_bytes(f) for f in fusion.body)
  if fusion.in_place_update is not None:
    # Updated in place: the update is read (if in HBM) and written; the
    # buffer itself (the first operand) is neither read nor written whole.
    size = hlo_tpu._bytes(fusion.in_place_update)  # pylint: disable=protected-access
    read = sum(min(hlo_tpu._bytes(s), size)  # pylint: disable=protected-access
               for s, space in zip(fusion.operand_shapes[1:],
                                   fusion.operand_spaces[1:]) if space == 0)
    return read + (0 if fusion.memory_space else size)
  out = fusion.output_shape
  if fusion.opcode.endswith('-start'):
    out = hlo_tpu.async_destination(out)
  size = hlo_tpu._bytes(out)  # pylint: disable=protected-access
  whole = fusion.dots or fusion.reduces or fusion.kind == 'tpu_custom_call'
  read = sum(hlo_tpu._bytes(s) if whole else min(hlo_tpu._bytes(s), size)  # pylint: disable=protected-access
             for s, space in zip(fusion.operand_shapes, fusion.operand_spaces)
             if space == 0)
  return read + (0 if fusion.memory_space else size)


def row_windows(fusion: hlo_tpu.Fusion) -> int:
  """Output windows along the rows (the second-minor dimension of the output
  layout, in its tiles): how often the weights are streamed. The window
  bounds run over the layout's dimensions from major to minor (seen on v5e:
  values bf16[8,128,4,512]{3,1,2,0} has output window (1, 4, 16, 4) and 8
  iterations: 8 heads one at a time, the 4 query heads, 16 row tiles of 8 and
  4 column tiles whole), so the rows are dims[layout[1]] and their bound is
  bounds[-2]; dims[-2] only for the default layout."""
  out = fusion.output_shape
  out = out[0] if isinstance(out, tuple) else out
  bounds = fusion.output_window_bounds
  if not bounds or len(out.dims) < 2 or len(bounds) != len(out.dims):
    return 1
  layout = getattr(out, 'layout', None)
  rows = layout[1] if layout and len(layout) == len(out.dims) else len(out.dims) - 2
  tile_rows = 8
  if fusion.tiles:
    tile_rows = int(fusion.tiles[2:].split(',')[0])
  return -(-(-(-out.dims[rows] // tile_rows)) // max(bounds[-2], 1))


def price_fusion(fusion: hlo_tpu.Fusion, balance, spec_tpu: dict
                 ) -> principle.KernelTime:
  """One fusion on a TPU spec (the module docstring)."""
  moved = 0 if fusion.refill else hbm_bytes(fusion)
  name = fusion.source_op if len(fusion.source_ops) < 2 else '+'.join(
      fusion.source_ops)
  ragged = ragged_dot(fusion)
  if ragged:
    return _price_ragged(fusion, name, ragged, balance, spec_tpu)
  if fusion.kind != 'tpu_conv':
    t_mem = moved / balance.bandwidth
    return principle.KernelTime(fusion.name, name, fusion.kind, moved, 0.0,
                                t_mem, 0.0, t_mem)
  flops = t_comp = 0.0
  passes = 0
  for dot in fusion.dots:
    f, t, p = dot_compute(dot, spec_tpu, balance.peak_flops)
    flops, t_comp, passes = flops + f, t_comp + t, max(passes, p)
  windows = row_windows(fusion)
  weights = fusion.dots[-1].weight_bytes if fusion.dots else 0
  moved += weights * (windows - 1)
  size = hlo_tpu._ELEMENT_BYTES.get(fusion.dots[-1].dtype, 4) if fusion.dots else 4  # pylint: disable=protected-access
  tile = spec_tpu['sublane'] * spec_tpu['lane']
  kernel_in_vmem = any(  # weights prefetched into VMEM: no HBM prologue
      space and hlo_tpu._bytes(shape) == weights  # pylint: disable=protected-access
      for shape, space in zip(fusion.operand_shapes, fusion.operand_spaces))
  prologue = ((0 if kernel_in_vmem else
               _window_bytes(fusion.kernel_window_bounds, tile, size)) +
              _window_bytes(fusion.input_window_bounds, tile, size)
              ) / balance.bandwidth
  t_mem = moved / balance.bandwidth
  tiling = (fusion.output_window_bounds, fusion.kernel_window_bounds,
            fusion.iteration_bounds)
  return principle.KernelTime(fusion.name, name, fusion.kind, moved, flops,
                              t_mem, t_comp, max(t_mem, t_comp) + prologue,
                              position_tiles=passes, waves=windows, tiling=tiling)


def ragged_dot(fusion: hlo_tpu.Fusion) -> tuple | None:
  """(rows, contraction, features, experts, lhs shape, rhs shape) of a ragged
  dot run as a Mosaic kernel (a custom call with a [rows, K] and an
  [experts, K, F] operand), else None."""
  if fusion.kind != 'tpu_custom_call':
    return None
  lhs = [s for s in fusion.operand_shapes if getattr(s, 'dims', None) and
         len(s.dims) == 2 and s.dtype in ('bf16', 'f32', 'f16')]
  rhs = [s for s in fusion.operand_shapes if getattr(s, 'dims', None) and
         len(s.dims) == 3]
  if not lhs or not rhs or lhs[-1].dims[1] != rhs[-1].dims[1]:
    return None
  (rows, contraction), (experts, _, features) = lhs[-1].dims, rhs[-1].dims
  return rows, contraction, features, experts, lhs[-1], rhs[-1]


def _price_ragged(fusion, name, ragged, balance, spec_tpu):
  """A ragged dot: its rows fall into at most min(experts, rows) groups, and
  only the weights of those groups are read (the Mosaic kernel skips empty
  groups); each group is a matmul on the MXUs with its rows padded (as
  dot_compute), the rows split evenly over the groups."""
  rows, contraction, features, experts, lhs, rhs = ragged
  groups = max(1, min(experts, rows))
  per_group = hlo_tpu.Dot(1, -(-rows // groups), contraction, features, 0,
                          lhs.dtype)
  flops, t_one, passes = dot_compute(per_group, spec_tpu, balance.peak_flops)
  moved = (hlo_tpu._bytes(lhs) + hlo_tpu._bytes(rhs) * groups / experts +  # pylint: disable=protected-access
           hlo_tpu._bytes(fusion.output_shape))  # pylint: disable=protected-access
  t_mem, t_comp = moved / balance.bandwidth, t_one * groups
  return principle.KernelTime(fusion.name, name, fusion.kind, moved,
                              flops * groups, t_mem, t_comp, max(t_mem, t_comp),
                              position_tiles=passes, waves=groups,
                              tiling=(fusion.mosaic_tiling,))


def price_module(fusions, positions: int, balance, *, target
                 ) -> principle.CurvePoint:
  """T_pred of one compiled TPU forward: the sum of its fusions (the fixed
  costs are the prologues, inside each fusion's time)."""
  priced = tuple(price_fusion(f, balance, target.spec.tpu) for f in fusions)
  return principle.CurvePoint(positions, priced, 0.0, 0.0,
                              sum(k.t_s for k in priced))


def cycles_time(program: hlo_tpu.Program, spec_tpu: dict) -> float:
  """The compiler's estimated_cycles summed over the program, in seconds at
  the spec's clock."""
  return program.estimated_cycles / spec_tpu['clock_hz']
