"""Reading what XLA:TPU chose: optimized TPU HLO to fusion records.

Input: `compiled.as_text()` of a deviceless TPU compile, or a `--xla_dump_to`
folder holding `*.after_codegen.txt` (the file whose instructions carry the
TPU backend configs; `*.after_optimizations.txt` does not).

Every instruction of the entry computation that does work becomes a `Fusion`:
  * kind: `tpu_conv` (a fusion holding a convolution or dot: a matmul on the
    MXUs, with the compiler's `window_config`), `tpu_custom_call` (a Mosaic /
    Pallas kernel, e.g. tokamax.ragged_dot), `tpu_copy` (an asynchronous copy,
    e.g. a weight prefetched into VMEM), `tpu_fusion` (any other fusion or op:
    elementwise, reduce, gather);
  * the source op(s), from the `jax.named_scope` names in the metadata;
  * the layout tiles of its output, e.g. `T(8,128)(2,1)` for
    `bf16[16,4096]{1,0:T(8,128)(2,1)}` (8 x 128 tiles, bf16 packed in pairs),
    and its memory space (`S(1)`: VMEM);
  * from `window_config`: kernel, output and input window bounds (in tiles),
    iteration bounds and the compiler's `estimated_cycles`;
  * the matmuls inside (`Dot`: batch, rows, contraction, features).
A `Program` adds the compiler's own estimate (`optimal_seconds`), flops and
bytes accessed from `compiled.cost_analysis()` when known.
"""

import dataclasses
import math
import pathlib
import re

from nfp_jax import hlo

KINDS = ('tpu_conv', 'tpu_custom_call', 'tpu_copy', 'tpu_fusion')
_NO_WORK = frozenset((
    'parameter', 'constant', 'tuple', 'get-tuple-element', 'bitcast',
    'copy-done', 'after-all', 'partition-id', 'replica-id', 'opt-barrier',
    'add-dependency'))
_MATMULS = ('convolution', 'dot')
_PRIMITIVES = ('dot_general', 'ragged_dot_general', 'ragged_dot', 'tokamax')
_INSTRUCTION_SHAPE = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+[a-z][\w\-]*\(')
_TILES = re.compile(r'T\([\d,]+\)(?:\([\d,]+\))*')
_SPACE = re.compile(r'S\((\d+)\)')
_INDEX_COMMENT = re.compile(r'/\*index=\d+\*/')
_THREAD_END = re.compile(r'^\}, execution_thread="\w+"\s*$', re.M)


@dataclasses.dataclass(frozen=True)
class Dot:
  """One matmul inside a fusion: `batch` independent [rows, contraction] x
  [contraction, features] products (rows along the output's non-feature
  dimensions, i.e. the positions for a block's projections)."""
  batch: int
  rows: int
  contraction: int
  features: int
  weight_bytes: int  # the kernel (right-hand) operand
  dtype: str

  @property
  def flops(self) -> float:
    return 2.0 * self.batch * self.rows * self.contraction * self.features


@dataclasses.dataclass(frozen=True)
class Fusion:
  """One entry-level instruction of a TPU program, with the windows XLA chose."""
  name: str
  kind: str  # one of KINDS
  opcode: str
  fusion_kind: str | None  # kOutput, kLoop, ...
  source_op: str | None
  source_ops: tuple
  output_shape: object  # hlo.Shape or a tuple of them
  operand_shapes: tuple
  operand_spaces: tuple  # memory space of each operand (0 HBM, 1 VMEM)
  tiles: str | None  # layout tiles of the output, e.g. 'T(8,128)(2,1)'
  memory_space: int
  kernel_window_bounds: tuple | None = None
  output_window_bounds: tuple | None = None
  input_window_bounds: tuple | None = None
  iteration_bounds: tuple | None = None
  estimated_cycles: int | None = None
  emitter: str | None = None  # convolution_algorithm_config.emitter
  # A Mosaic (Pallas) custom call: its tiling (e.g. ragged_dot_tiling
  # "32,4096,384": rows, contraction, features) and the cost_estimate its
  # kernel declares (flops, bytes_accessed, transcendentals).
  custom_call_target: str | None = None
  mosaic_tiling: tuple | None = None
  mosaic_cost: dict | None = None
  dots: tuple = ()
  positions: int | None = None
  reduces: bool = False  # holds a reduce: reads its operands whole (a GEMV)
  # An asynchronous copy whose result nothing in the program uses: the
  # cross-program prefetch refilled at the end of a call for the next one.
  refill: bool = False
  # A fusion whose root is a dynamic-update-slice updates its first operand in
  # place (XLA aliases them): it moves only this update, not the whole buffer.
  in_place_update: object = None  # hlo.Shape of the update, or None
  # A while loop: its body's work instructions and its trip count (read from
  # a condition `counter < constant`; None when it has another form).
  body: tuple = ()
  trip_count: int | None = None

  def to_dict(self) -> dict:
    return hlo._jsonable(dataclasses.asdict(self))  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class Program:
  """One compiled TPU module: its fusions and the compiler's own estimate."""
  name: str
  file: str | None
  positions: int | None
  fusions: tuple
  optimal_seconds: float | None = None
  flops: float | None = None
  bytes_accessed: float | None = None
  transcendentals: float | None = None

  @property
  def uncosted_custom_calls(self) -> int:
    """Entry-level custom calls XLA:TPU's cost model cannot cost (not a
    Mosaic kernel, e.g. ConcatBitcast): each adds -1 s to optimal_seconds."""
    return sum(1 for f in self.fusions if f.kind == 'tpu_custom_call' and
               f.custom_call_target != 'tpu_custom_call')

  @property
  def compiler_seconds(self) -> float | None:
    """optimal_seconds with the -1 s of each uncosted custom call taken out."""
    if self.optimal_seconds is None:
      return None
    return self.optimal_seconds + self.uncosted_custom_calls

  @property
  def estimated_cycles(self) -> int:
    """Sum of the compiler's estimated_cycles over the windowed fusions."""
    return sum(f.estimated_cycles or 0 for f in self.fusions)

  def to_dict(self) -> dict:
    return dict(name=self.name, file=self.file, positions=self.positions,
                platform='tpu', optimal_seconds=self.optimal_seconds,
                flops=self.flops, bytes_accessed=self.bytes_accessed,
                transcendentals=self.transcendentals,
                uncosted_custom_calls=self.uncosted_custom_calls,
                compiler_seconds=self.compiler_seconds,
                estimated_cycles=self.estimated_cycles,
                fusions=[f.to_dict() for f in self.fusions])


def is_tpu_hlo(text: str) -> bool:
  """Whether optimized HLO text is XLA:TPU's (its layouts carry T(...) tiles
  and memory spaces, and matmul fusions carry window_config)."""
  return '"window_config"' in text or (':T(' in text and 'tpu' in text.lower())


def _layouts(text: str) -> dict:
  """Instruction name -> the raw text of its (first) shape with layout."""
  found = {}
  for line in text.splitlines():
    match = _INSTRUCTION_SHAPE.match(line)
    if match:
      found.setdefault(match.group(1), match.group(2))
  return found


def async_destination(shape):
  """The destination of an asynchronous start (copy-start: (destination,
  source, context); slice-start: ((source), destination, context)): its first
  element that is an array; other shapes as they are."""
  if isinstance(shape, (tuple, list)):
    return next((s for s in shape if not isinstance(s, (tuple, list))), None)
  return shape


def _destination_text(shape_text: str | None) -> str | None:
  if not shape_text or not shape_text.startswith('('):
    return shape_text
  parts = hlo._split_top(shape_text[1:-1])  # pylint: disable=protected-access
  return next((p.strip() for p in parts if not p.strip().startswith('(')), None)


def _tiles(shape_text: str | None) -> str | None:
  if not shape_text or ':' not in shape_text:
    return None
  match = _TILES.search(shape_text.split(':', 1)[1])
  return match.group(0) if match else None


def _space(shape_text: str | None) -> int:
  """Memory space of a shape: S(1) is VMEM; none written is HBM (0)."""
  if not shape_text or ':' not in shape_text or shape_text.startswith('('):
    return 0
  match = _SPACE.search(shape_text.split(':', 1)[1].split('}')[0])
  return int(match.group(1)) if match else 0


def _prod(values) -> int:
  return math.prod(values) if values else 1


def _window(text: str, key: str, count: int) -> list:
  match = re.search(rf'\b{key}=([\dx]+)', text or '')
  return [int(v) for v in match.group(1).split('x')] if match else [1] * count


def _taps(inst: hlo.Instruction, lhs: hlo.Shape, lhs_labels: str) -> int:
  """Window taps of a convolution that meet real (not dilation or padding)
  input elements. XLA:TPU writes a batched matmul (e.g. GQA's kv heads) as a
  convolution whose window, with lhs dilation and padding, meets one real
  element per output: a plain matmul has one tap."""
  spatial = [d for d, l in zip(lhs.dims, lhs_labels) if l.isdigit()]
  window = inst.attributes.get('window', '')
  sizes = _window(window, 'size', len(spatial))
  dilate = _window(window, 'lhs_dilate', len(spatial))
  return _prod([min(size, -(-size // dil), extent)
                for size, dil, extent in zip(sizes, dilate, spatial)])


def _conv_dot(inst: hlo.Instruction, computation: hlo.Computation) -> Dot:
  """A convolution used as a matmul: dim_labels such as `bf_io->bf`
  (lhs_rhs->out; b batch, f feature, i/o the kernel's input/output features,
  digits spatial). Contraction: the kernel's input features times the window
  taps; features: the output's f dimensions; rows: the rest of the output."""
  lhs = computation.by_name[inst.operands[0]].shape
  rhs = computation.by_name[inst.operands[1]].shape
  out = inst.shape[0] if isinstance(inst.shape, tuple) else inst.shape
  labels = inst.attributes.get('dim_labels', 'bf_io->bf')
  lhs_labels, rest = labels.split('_', 1)
  rhs_labels, out_labels = rest.split('->')
  inner = _prod([d for d, l in zip(rhs.dims, rhs_labels) if l == 'i'])
  features = _prod([d for d, l in zip(out.dims, out_labels) if l == 'f'])
  groups = max(int(inst.attributes.get('feature_group_count', 1)),
               int(inst.attributes.get('batch_group_count', 1)))
  rows = _prod(out.dims) // max(features, 1)
  return Dot(groups, rows, inner * _taps(inst, lhs, lhs_labels),
             features // max(groups, 1), _bytes(rhs), rhs.dtype)


def _dot_dot(inst: hlo.Instruction, computation: hlo.Computation) -> Dot:
  lhs = computation.by_name[inst.operands[0]].shape
  rhs = computation.by_name[inst.operands[1]].shape
  def dims(key):
    text = inst.attributes.get(key, '{}')
    return [int(d) for d in re.findall(r'\d+', text)]
  lhs_c, lhs_b = dims('lhs_contracting_dims'), dims('lhs_batch_dims')
  rhs_c, rhs_b = dims('rhs_contracting_dims'), dims('rhs_batch_dims')
  batch = _prod([lhs.dims[d] for d in lhs_b])
  contraction = _prod([lhs.dims[d] for d in lhs_c])
  rows = _prod([d for i, d in enumerate(lhs.dims) if i not in lhs_c + lhs_b])
  features = _prod([d for i, d in enumerate(rhs.dims) if i not in rhs_c + rhs_b])
  return Dot(batch, rows, contraction, features, _bytes(rhs), rhs.dtype)


_ELEMENT_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's4': 1, 'u4': 1, 's16': 2,
                  'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4, 'u32': 4, 'f32': 4,
                  's64': 8, 'u64': 8, 'f64': 8}


def _bytes(shape) -> int:
  """Bytes of a shape (a tuple sums); tokens and None are 0."""
  if shape is None:
    return 0
  if isinstance(shape, (tuple, list)):
    return sum(_bytes(s) for s in shape)
  return _prod(shape.dims) * _ELEMENT_BYTES.get(
      shape.dtype, 1 if shape.dtype.startswith('f8') else 4)


def _dots(module: hlo.Module, computation: hlo.Computation | None,
          seen: set) -> list:
  """The matmuls of a fused computation and of the fusions nested in it."""
  if computation is None or computation.name in seen:
    return []
  seen.add(computation.name)
  found = []
  for inst in computation.instructions:
    if inst.opcode == 'convolution':
      found.append(_conv_dot(inst, computation))
    elif inst.opcode == 'dot':
      found.append(_dot_dot(inst, computation))
    for key in ('calls', 'to_apply'):
      called = inst.called(key)
      if called:
        found += _dots(module, module.computations.get(called), seen)
  return found


def _is_refill(entry: hlo.Computation, inst: hlo.Instruction) -> bool:
  """A copy-start whose copy-done has no user (and is not the root)."""
  if inst.opcode != 'copy-start':
    return False
  dones = [u for u in entry.users.get(inst.name, ()) if u.opcode == 'copy-done']
  return bool(dones) and all(not entry.users.get(d.name) and not d.is_root
                             for d in dones)


def _has_reduce(module: hlo.Module, computation: hlo.Computation | None,
                seen=None) -> bool:
  seen = set() if seen is None else seen
  if computation is None or computation.name in seen:
    return False
  seen.add(computation.name)
  return any(inst.opcode.startswith('reduce') or _has_reduce(
      module, module.computations.get(inst.called('calls') or ''), seen)
             for inst in computation.instructions)


def _source_ops(module: hlo.Module, inst: hlo.Instruction) -> tuple:
  """Named scopes of the instruction and of every matmul inside it."""
  ops = []
  def add(op_name):
    op_name = re.sub(r'/tokamax:\{.*$', '/tokamax/kernel', op_name)
    parts = op_name.split('/')
    while len(parts) > 2 and parts[-2] in _PRIMITIVES:  # .../expert_gate/
      parts = parts[:-1]  # ragged_dot_general/ragged-dot-none -> expert_gate
    scope = hlo._scope('/'.join(parts))  # pylint: disable=protected-access
    if scope and scope not in ops and not scope.startswith('jit('):
      ops.append(scope)
  add(inst.op_name)
  stack, seen = [inst.called('calls')], set()
  while stack:
    name = stack.pop()
    if not name or name in seen or name not in module.computations:
      continue
    seen.add(name)
    for inner in module.computations[name].instructions:
      if inner.opcode in _MATMULS:
        add(inner.op_name)
      stack.append(inner.called('calls'))
  return tuple(ops)


def _ints(values) -> tuple | None:
  return tuple(int(v) for v in values) if values is not None else None


def _fusion(module: hlo.Module, entry: hlo.Computation, inst: hlo.Instruction,
            layouts: dict, positions: int | None) -> Fusion:
  window = (inst.backend_config or {}).get('window_config') or {}
  called = module.computations.get(inst.called('calls') or '')
  dots = tuple(_dots(module, called, set())) if inst.opcode == 'fusion' else ()
  if inst.opcode in _MATMULS:
    dots = ((_conv_dot if inst.opcode == 'convolution' else _dot_dot)(inst, entry),)
  if inst.opcode == 'custom-call':
    kind = 'tpu_custom_call'
  elif inst.opcode in ('copy-start', 'copy'):
    kind = 'tpu_copy'
  elif dots:
    kind = 'tpu_conv'
  else:
    kind = 'tpu_fusion'
  operands = [entry.by_name[o] for o in inst.operands if o in entry.by_name]
  ops = _source_ops(module, inst)
  config = (inst.backend_config or {}).get('convolution_algorithm_config') or {}
  cycles = window.get('estimated_cycles')
  own = layouts.get(inst.name)
  if inst.opcode.endswith('-start'):
    own = _destination_text(own)
  mosaic = ((inst.backend_config or {}).get('custom_call_config') or {}).get(
      'cost_estimate')
  tiling = re.search(r'ragged_dot_tiling="([\d,]+)"',
                     inst.attributes.get('frontend_attributes', ''))
  return Fusion(
      name=inst.name, kind=kind, opcode=inst.opcode,
      fusion_kind=inst.attributes.get('kind'),
      source_op=ops[0] if ops else None, source_ops=ops,
      output_shape=inst.shape, operand_shapes=tuple(o.shape for o in operands),
      operand_spaces=tuple(_space(layouts.get(o.name)) for o in operands),
      tiles=_tiles(own), memory_space=_space(own),
      kernel_window_bounds=_ints(window.get('kernel_window_bounds')),
      output_window_bounds=_ints(window.get('output_window_bounds')),
      input_window_bounds=_ints(window.get('input_window_bounds')),
      iteration_bounds=_ints(window.get('iteration_bounds')),
      estimated_cycles=int(cycles) if cycles is not None else None,
      emitter=config.get('emitter'),
      custom_call_target=(inst.attributes.get('custom_call_target') or ''
                          ).strip('"') or None,
      mosaic_tiling=_ints(tiling.group(1).split(',')) if tiling else None,
      mosaic_cost={k: float(v) for k, v in mosaic.items()} if mosaic else None,
      dots=dots, positions=positions, refill=_is_refill(entry, inst),
      reduces=inst.opcode.startswith('reduce') or _has_reduce(module, called),
      in_place_update=_in_place_update(called),
      **(_loop(module, inst, layouts, positions) if inst.opcode == 'while' else {}))


def _loop(module, inst, layouts, positions) -> dict:
  """body and trip_count of a while instruction. The trip count is K of a
  condition whose root is `get-tuple-element(param) < constant(K)`, the
  counter starting at 0 (XLA's canonical loop); else None."""
  body = module.computations.get(inst.called('body') or '')
  cond = module.computations.get(inst.called('condition') or '')
  trips = None
  if cond is not None:
    root = cond.root
    consts = [cond.by_name.get(o) for o in root.operands]
    literal = [c.attributes.get('_literal') for c in consts
               if c is not None and c.opcode == 'constant']
    if (root.opcode == 'compare' and root.attributes.get('direction') == 'LT'
        and literal and literal[0].lstrip('-').isdigit()):
      trips = int(literal[0])
  inner = tuple(_fusion(module, body, i, layouts, positions)
                for i in (body.instructions if body else ())
                if i.opcode not in _NO_WORK and not i.opcode.endswith('-done'))
  return dict(body=inner, trip_count=trips)


def _in_place_update(called: hlo.Computation | None):
  """The update's shape when the fused computation's root is a
  dynamic-update-slice (done in place on its first operand), else None."""
  if called is None:
    return None
  root = called.root
  if root.opcode != 'dynamic-update-slice' or len(root.operands) < 2:
    return None
  update = called.by_name.get(root.operands[1])
  return update.shape if update is not None else None


def read_program(text: str, positions: int | None = None, *, file=None,
                 cost: dict | None = None) -> Program:
  """The fusions of one optimized TPU module (and its cost_analysis if given).

  Raises:
    hlo.HloParseError: if the text is not HLO.
  """
  text = _INDEX_COMMENT.sub('', text)  # `/*index=5*/` inside long lists
  text = _THREAD_END.sub('}', text)  # v5p/v6e: `}, execution_thread="sparsecore"`
  module = hlo.parse_module(text)
  entry = module.entry
  layouts = _layouts(text)
  fusions = tuple(_fusion(module, entry, inst, layouts, positions)
                  for inst in entry.instructions if inst.opcode not in _NO_WORK
                  and not inst.opcode.endswith('-done'))  # its -start is kept
  cost = cost or {}
  return Program(module.name, file, positions, fusions,
                 optimal_seconds=cost.get('optimal_seconds'),
                 flops=cost.get('flops'),
                 bytes_accessed=cost.get('bytes accessed'),
                 transcendentals=cost.get('transcendentals'))


def dump_files(folder) -> list:
  """The `*.after_codegen.txt` files of an `--xla_dump_to` folder (XLA:TPU)."""
  return sorted(pathlib.Path(folder).glob('*after_codegen.txt'))


def read_dump(folder, positions: int | None = None) -> list:
  """Every TPU module of a dump folder (or one HLO file) as a Program.

  Raises:
    hlo.HloParseError: if the path holds no TPU HLO.
  """
  path = pathlib.Path(folder)
  files = [path] if path.is_file() else dump_files(path) if path.is_dir() else []
  if not path.exists():
    raise hlo.HloParseError(f'{path} does not exist.')
  if not files:
    raise hlo.HloParseError(f'{path} holds no *after_codegen.txt file; dump a '
                            'TPU compile with --xla_dump_to=DIR '
                            '--xla_dump_hlo_as_text.')
  return [read_program(f.read_text(), positions, file=str(f)) for f in files]
