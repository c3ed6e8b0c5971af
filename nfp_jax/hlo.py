"""Reading the tiling XLA chose: optimized HLO text and dump folders to kernel records.

Input is what XLA writes: `compiled.as_text()` (optimized HLO), or a
`--xla_dump_to` folder holding `*after_optimizations.txt` (plus
`*thunk_sequence.txt`, whose lines give each GPU kernel's launch grid, and, on
XLA:CPU, the LLVM IR files whose GEMV function names carry the GEMV tile).

The text is parsed into its structure (computations, instructions, shapes with
layouts, attributes, backend_config JSON) and every kernel the runtime launches
becomes a `Kernel` record: what it computes (the source op, from the
`jax.named_scope` names kept in the metadata), which kind of kernel runs it, the
dot inside it with its dimension numbers, which output dimension carries the
positions N, and the tile along positions and along features, block_k,
split-K, warps, stages, CTAs and the grid when known. Nothing is guessed from
names of the blocks: positions are followed through the dataflow from the
activation parameters, so an operand swap (the positions on the dot's right-hand
side) still reports the tile along N.
"""

import dataclasses
import functools
import json
import math
import pathlib
import re

KINDS = ('triton_gemm', 'triton_fusion', 'cublas', 'gpu_gemv_reduce', 'cpu_ynn',
         'cpu_dot', 'cpu_gemv', 'other')

# Instructions that launch nothing: views, tuples, control flow (whose bodies are
# walked instead) and parameters.
_NOT_KERNELS = frozenset((
    'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast', 'while',
    'call', 'conditional', 'after-all', 'partition-id', 'replica-id',
    'opt-barrier', 'add-dependency', 'domain'))
_DOT_PRIMITIVES = ('dot_general', 'ragged_dot_general', 'ragged_dot', 'dot')
_SAME_DIMS_OPS = frozenset((
    'convert', 'copy', 'negate', 'exponential', 'add', 'multiply', 'subtract',
    'divide', 'maximum', 'minimum', 'select', 'tanh', 'logistic', 'abs', 'sqrt',
    'rsqrt', 'clamp', 'compare', 'and', 'or', 'not', 'power', 'log', 'sine',
    'cosine', 'slice', 'dynamic-slice', 'pad', 'reduce-precision'))
_GEMV_FUNCTION = re.compile(
    r'\b((col|row)_major_gemv_([A-Z]+\d*)_(\d+)_(\d+)_(\d+)_(\d+)\w*)')


class HloParseError(ValueError):
  """The input is not optimized HLO text (or a dump folder holding some)."""


@dataclasses.dataclass(frozen=True)
class Shape:
  """An array shape: element type, dimensions and minor-to-major layout."""
  dtype: str
  dims: tuple
  layout: tuple | None = None

  def __str__(self) -> str:
    return f'{self.dtype}[{",".join(map(str, self.dims))}]'

  def major_to_minor(self) -> tuple:
    """Dimensions from major to minor in memory (row-major if no layout)."""
    if self.layout is None or len(self.layout) != len(self.dims):
      return tuple(range(len(self.dims)))
    return tuple(reversed(self.layout))


@dataclasses.dataclass(frozen=True)
class Instruction:
  name: str
  opcode: str
  shape: Shape | tuple  # a tuple of Shapes for tuple-shaped results
  operands: tuple  # operand instruction names
  attributes: dict  # attribute name -> raw text
  backend_config: dict | None
  is_root: bool

  @property
  def metadata(self) -> dict:
    return _parse_metadata(self.attributes.get('metadata', ''))

  @property
  def op_name(self) -> str:
    return self.metadata.get('op_name', '')

  def called(self, key: str) -> str | None:
    value = self.attributes.get(key)
    return value.lstrip('%') if value else None


@dataclasses.dataclass(frozen=True)
class Computation:
  name: str
  instructions: tuple
  is_entry: bool

  @functools.cached_property
  def by_name(self) -> dict:
    return {i.name: i for i in self.instructions}

  @functools.cached_property
  def users(self) -> dict:
    """Instruction name -> the instructions that use it."""
    users = {}
    for inst in self.instructions:
      for operand in inst.operands:
        users.setdefault(operand, []).append(inst)
    return users

  @property
  def root(self) -> Instruction:
    return next(i for i in self.instructions if i.is_root)

  def parameter(self, index: int) -> Instruction:
    for inst in self.instructions:
      if inst.opcode == 'parameter' and inst.attributes.get('_arg') == str(index):
        return inst
    raise KeyError(index)


@dataclasses.dataclass(frozen=True)
class Module:
  name: str
  computations: dict  # name -> Computation

  @property
  def entry(self) -> Computation:
    return next(c for c in self.computations.values() if c.is_entry)


@dataclasses.dataclass(frozen=True)
class Kernel:
  """One kernel the runtime launches, with the tiling XLA chose for it.

  Tiles are reported along the positions (the M of principle.md, whichever
  side of the dot XLA put them on) and along the features (the output width).
  Fields XLA does not state for this kind of kernel are None.
  """
  name: str
  source_op: str | None  # named scope of the op, e.g. 'gate', 'expert_down'
  kind: str  # one of KINDS
  opcode: str
  op_name: str  # full metadata op_name
  source_ops: tuple = ()  # every source op computed in this kernel (merged GEMMs)
  operand_shapes: tuple = ()  # Shapes of the kernel's operands
  output_shape: Shape | tuple | None = None
  dot_lhs: Shape | None = None  # the dot (or custom call) inside the kernel
  dot_rhs: Shape | None = None
  dot_output: Shape | None = None
  dot_dimension_numbers: dict | None = None
  positions: int | None = None
  positions_operand: str | None = None  # 'lhs' or 'rhs' of the dot ('rhs': swap)
  positions_dim: int | None = None  # output dimension that carries the positions
  features_dim: int | None = None  # output dimension that carries the features
  split_k_dim: int | None = None  # output dimension of the split-K partial sums
  tile_positions: int | None = None
  tile_features: int | None = None
  block_k: int | None = None
  split_k: int | None = None
  num_warps: int | None = None
  num_stages: int | None = None
  num_ctas: int | None = None
  grid_blocks: int | None = None
  grid: tuple | None = None  # launch grid (x, y, z) from the thunk sequence
  threads_per_block: int | None = None
  shared_memory_bytes: int | None = None
  fusion_kind: str | None = None  # kLoop, kInput, kCustom, ... or a backend kind
  llvm_function: str | None = None  # XLA:CPU GEMV function name (LLVM IR dump)
  split_k_of: str | None = None  # this kernel sums the split-K partials of that one
  unknown_config: dict = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict:
    return _jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class ModuleKernels:
  """The kernels of one compiled module, as the tiling CLI writes them."""
  name: str
  file: str | None
  positions: int | None
  platform: str  # 'gpu' or 'cpu', as read from the HLO
  kernels: tuple

  def to_dict(self) -> dict:
    return dict(name=self.name, file=self.file, positions=self.positions,
                platform=self.platform,
                kernels=[k.to_dict() for k in self.kernels])


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value


# ----------------------------------------------------------------------------
# Text to structure.

def _outside_quotes(text: str, start: int = 0):
  """Yields (index, character, bracket depth after it) for every character of
  `text` from `start` that is not inside a quoted string."""
  depth, quote, i = 0, False, start
  while i < len(text):
    ch = text[i]
    if quote:
      if ch == '\\':
        i += 1
      elif ch == '"':
        quote = False
    elif ch == '"':
      quote = True
    else:
      depth += (ch in '([{') - (ch in ')]}')
      yield i, ch, depth
    i += 1


def _split_top(text: str, sep: str = ',') -> list:
  """Splits on `sep` outside brackets, braces, parentheses and quotes."""
  parts, start = [], 0
  for i, ch, depth in _outside_quotes(text):
    if ch == sep and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  parts.append(text[start:])
  return [p.strip() for p in parts if p.strip()]


def _matching(text: str, start: int) -> int:
  """Index just after the bracket that closes the one at `start`."""
  for i, ch, depth in _outside_quotes(text, start):
    if ch in ')]}' and depth == 0:
      return i + 1
  raise HloParseError('Unbalanced brackets in an HLO instruction.')


_ARRAY_SHAPE = re.compile(r'([a-z]+[0-9a-z]*)\[([0-9,\s]*)\](\{[^}]*\})?')


def parse_shape(text: str):
  """A Shape, or a tuple of Shapes for a tuple shape such as `(f32[2], s8[4])`."""
  text = text.strip()
  if text.startswith('('):
    return tuple(parse_shape(p) for p in _split_top(text[1:-1]))
  match = _ARRAY_SHAPE.fullmatch(text)
  if not match:
    raise HloParseError(f'Cannot read the HLO shape {text!r}.')
  dims = tuple(int(d) for d in match.group(2).split(',') if d.strip())
  layout = None
  if match.group(3):
    minor_to_major = match.group(3)[1:-1].split(':')[0]
    layout = tuple(int(d) for d in minor_to_major.split(',') if d.strip())
  return Shape(match.group(1), dims, layout)


def _parse_metadata(text: str) -> dict:
  return {m.group(1): m.group(2).replace('\\\'', '\'').replace('\\"', '"')
          for m in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', text)}


_INSTRUCTION_HEAD = re.compile(r'\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*')
_OPCODE = re.compile(r'\s*([a-z][\w\-]*)\(')


def _parse_instruction(line: str) -> Instruction:
  head = _INSTRUCTION_HEAD.match(line)
  if not head:
    raise HloParseError(f'Cannot read the HLO instruction {line.strip()[:80]!r}.')
  rest = line[head.end():]
  end = _matching(rest, 0) if rest.startswith('(') else rest.index(' ')
  shape = parse_shape(rest[:end])
  rest = rest[end:]
  opcode_match = _OPCODE.match(rest)
  if not opcode_match:
    raise HloParseError(f'No opcode in the HLO instruction {line.strip()[:80]!r}.')
  opcode = opcode_match.group(1)
  args_start = opcode_match.end() - 1
  args_end = _matching(rest, args_start)
  operand_text = rest[args_start + 1:args_end - 1]
  attributes = {}
  if opcode == 'parameter':
    attributes['_arg'] = operand_text.strip()
    operands = ()
  elif opcode == 'constant':
    attributes['_literal'] = operand_text.strip()
    operands = ()
  else:
    operands = tuple(p.split()[-1].lstrip('%') for p in _split_top(operand_text))
  for part in _split_top(rest[args_end:].lstrip(', ')):
    key, _, value = part.partition('=')
    attributes[key.strip()] = value.strip()
  backend_config = None
  if attributes.get('backend_config', '').startswith('{'):
    try:
      backend_config = json.loads(attributes['backend_config'])
    except ValueError:
      backend_config = None
  return Instruction(head.group(2), opcode, shape, operands, attributes,
                     backend_config, bool(head.group(1)))


_COMPUTATION_HEAD = re.compile(r'(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*\))?\s*->.*\{\s*$')


def parse_module(text: str) -> Module:
  """Parses optimized HLO text into computations and instructions.

  Raises:
    HloParseError: if the text is not an HLO module.
  """
  lines = text.splitlines()
  header = next((l for l in lines if l.strip()), '')
  if not header.startswith('HloModule '):
    raise HloParseError('The input is not HLO text: it does not start with '
                        '"HloModule".')
  name = header.split()[1].rstrip(',')
  computations, current, body = {}, None, []
  for line in lines[1:]:
    stripped = line.strip()
    if current is None:
      match = _COMPUTATION_HEAD.match(stripped)
      if match:
        current, body = (match.group(2), bool(match.group(1))), []
      continue
    if stripped == '}':
      instructions = tuple(_parse_instruction(l) for l in body)
      computations[current[0]] = Computation(current[0], instructions, current[1])
      current = None
    elif stripped:
      body.append(stripped)
  if current is not None:
    raise HloParseError(f'The HLO computation {current[0]!r} is not closed (the '
                        'text is cut).')
  if not any(c.is_entry for c in computations.values()):
    raise HloParseError('The HLO text has no ENTRY computation.')
  return Module(name, computations)


# ----------------------------------------------------------------------------
# Dataflow helpers.

def _scope(op_name: str) -> str | None:
  """The named scope of an op: 'jit(f)/layer0/ffn/gate/dot_general' -> 'gate'."""
  if not op_name:
    return None
  if op_name.startswith(('state[', 'args[')):
    keys = re.findall(r"\['([^']+)'\]", op_name)
    return keys[-1] if keys else None
  parts = [p for p in op_name.split('/')
           if p and '(' not in p and '->' not in p]
  if len(parts) >= 2:
    return parts[-2]
  return parts[0] if parts else None


def _is_dot_op(op_name: str) -> bool:
  return op_name.rsplit('/', 1)[-1] in _DOT_PRIMITIVES


def _dependent(computation: Computation, seeds: set) -> set:
  """Names of instructions in `computation` that depend on any of `seeds`."""
  dependent = set(seeds)
  for inst in computation.instructions:  # HLO text lists operands before users
    if any(o in dependent for o in inst.operands):
      dependent.add(inst.name)
  return dependent


def _activation_parameters(entry: Computation, activation_parameters) -> set:
  params = [i for i in entry.instructions if i.opcode == 'parameter']
  if activation_parameters is not None:
    wanted = {str(a) for a in activation_parameters}
    return {p.name for p in params if p.attributes['_arg'] in wanted}
  named = {p.name for p in params if p.op_name.startswith('args[')}
  if named:
    return named
  first = [p for p in params if p.attributes['_arg'] == '0']
  return {first[0].name} if first else set()


def _default_positions(entry: Computation, activations: set) -> int | None:
  for inst in entry.instructions:
    if inst.name in activations and isinstance(inst.shape, Shape):
      if inst.shape.dims:
        return inst.shape.dims[0]
  return None


def _ints(text: str) -> tuple:
  return tuple(int(v) for v in re.findall(r'-?\d+', text or ''))


def _dot_dimension_numbers(inst: Instruction) -> dict:
  numbers = {}
  for key in ('lhs_contracting_dims', 'rhs_contracting_dims', 'lhs_batch_dims',
              'rhs_batch_dims'):
    numbers[key] = list(_ints(inst.attributes.get(key, '')))
  return numbers


def _free_dims(rank: int, contracting, batch) -> list:
  return [d for d in range(rank) if d not in contracting and d not in batch]


def _bitcast_dim(source: Shape, target: Shape, dim: int, exact: bool = False
                 ) -> int | None:
  """Maps a dimension through a bitcast or reshape by its span in memory.

  With `exact`, only a target dimension with the very same span counts (a
  source dimension that is part of a larger one maps to None).
  """
  def spans(shape):
    out, stride = {}, 1
    for d in reversed(shape.major_to_minor()):
      out[d] = (stride, stride * shape.dims[d])
      stride *= shape.dims[d]
    return out
  if source.dims[dim] == 1:
    return None
  low, high = spans(source)[dim]
  for d, (t_low, t_high) in spans(target).items():
    if target.dims[d] > 1 and t_low <= low and high <= t_high:
      return d if not exact or (t_low, t_high) == (low, high) else None
  return None


def _map_forward(user: Instruction, operand: Instruction, dim: int | None):
  """The dimension of `user`'s result that `dim` of `operand` becomes."""
  if dim is None or not isinstance(user.shape, Shape):
    return None
  if user.opcode in ('bitcast', 'reshape'):
    return _bitcast_dim(operand.shape, user.shape, dim)
  if user.opcode == 'transpose':
    permutation = _ints(user.attributes.get('dimensions', ''))
    return permutation.index(dim) if dim in permutation else None
  if user.opcode == 'broadcast':
    kept = _ints(user.attributes.get('dimensions', ''))
    return kept[dim] if dim < len(kept) else None
  if user.opcode in _SAME_DIMS_OPS and len(user.shape.dims) == len(operand.shape.dims):
    return dim
  return None


def _to_root(computation: Computation, start: Instruction, dims: dict) -> dict:
  """Follows dims {role: dim of start} along single users up to the root."""
  users = computation.users
  current = start
  by_name = computation.by_name
  while not current.is_root:
    following = users.get(current.name, [])
    if len(following) != 1:
      return {role: None for role in dims}
    user = following[0]
    if user.opcode == 'tuple':  # a multi-output root: dims stay the same
      return dims
    dims = {role: _map_forward(user, by_name[current.name], d)
            for role, d in dims.items()}
    current = user
  return dims


# ----------------------------------------------------------------------------
# Kernel records.

def _kernel_computation(module: Module, inst: Instruction) -> Computation | None:
  name = inst.called('calls')
  return module.computations.get(name) if name else None


def _find(computation: Computation, module: Module, opcodes) -> list:
  """Instructions with one of `opcodes`, searching nested fusion computations."""
  found = []
  for inst in computation.instructions:
    if inst.opcode in opcodes:
      found.append((computation, inst))
    nested = _kernel_computation(module, inst) if inst.opcode == 'fusion' else None
    if nested is not None:
      found.extend(_find(nested, module, opcodes))
  return found


def _locate_dot(module: Module, computation: Computation, dependent_params: set):
  """(computation, dot, dependent names) of the first dot in a fusion, following
  nested fusions; `dependent_params` are the parameter indices that carry the
  positions."""
  seeds = {i.name for i in computation.instructions if i.opcode == 'parameter'
           and int(i.attributes['_arg']) in dependent_params}
  dependent = _dependent(computation, seeds)
  for inst in computation.instructions:
    if inst.opcode in ('dot', 'ragged-dot'):
      return computation, inst, dependent
  for inst in computation.instructions:
    nested = _kernel_computation(module, inst) if inst.opcode == 'fusion' else None
    if nested is not None:
      found = _locate_dot(module, nested, {
          i for i, o in enumerate(inst.operands) if o in dependent})
      if found is not None:
        return found
  return None


def _classify(inst: Instruction, computation: Computation | None, module: Module,
              platform: str) -> str:
  config = inst.backend_config or {}
  if inst.opcode == 'custom-call':
    target = inst.attributes.get('custom_call_target', '')
    return 'cublas' if 'cublas' in target else 'other'
  if inst.opcode == 'fusion':
    backend_kind = (config.get('fusion_backend_config') or {}).get('kind', '')
    if backend_kind in ('__triton_gemm', '__triton_nested_gemm_fusion'):
      return 'triton_gemm'
    if backend_kind.startswith('__triton'):
      return 'triton_fusion'
    if (config.get('fusion_config') or {}).get('kind') == '__ynn_fusion':
      return 'cpu_ynn'
    if computation is not None:
      dots = _find(computation, module, ('dot',))
      if dots and platform == 'cpu':
        return 'cpu_gemv' if _is_gemv(dots[0][1]) else 'cpu_dot'
      if dots:
        return 'other'
      reduces = _find(computation, module, ('reduce',))
      if platform == 'gpu' and any(_is_dot_op(r.op_name) for _, r in reduces):
        return 'gpu_gemv_reduce'
    return 'other'
  if inst.opcode == 'dot' and platform == 'cpu':
    return 'cpu_gemv' if _is_gemv(inst) else 'cpu_dot'
  return 'other'


def _is_gemv(dot: Instruction) -> bool:
  """A matrix-vector product: one operand has no free dimension larger than 1."""
  numbers = _dot_dimension_numbers(dot)
  output = dot.shape
  if not isinstance(output, Shape):
    return False
  batch = len(numbers['lhs_batch_dims'])
  free = output.dims[batch:]
  return any(d == 1 for d in free) or len(free) < 2


def _platform(module: Module) -> str:
  for computation in module.computations.values():
    for inst in computation.instructions:
      config = inst.backend_config or {}
      if 'fusion_config' in config or 'outer_dimension_partitions' in config:
        return 'cpu'
      if ('operation_queue_id' in config or 'fusion_backend_config' in config
          or 'gemm_backend_config' in config):
        return 'gpu'
  return 'cpu'


_KNOWN_CONFIG = (
    ('fusion_backend_config', 'kind'),
    ('fusion_backend_config', 'block_level_fusion_config', 'num_warps'),
    ('fusion_backend_config', 'block_level_fusion_config', 'num_ctas'),
    ('fusion_backend_config', 'block_level_fusion_config', 'num_stages'),
    ('fusion_backend_config', 'block_level_fusion_config', 'output_tiles'),
    ('fusion_backend_config', 'triton_gemm_config', 'block_m'),
    ('fusion_backend_config', 'triton_gemm_config', 'block_n'),
    ('fusion_backend_config', 'triton_gemm_config', 'block_k'),
    ('fusion_backend_config', 'triton_gemm_config', 'split_k'),
    ('fusion_backend_config', 'triton_gemm_config', 'num_warps'),
    ('fusion_backend_config', 'triton_gemm_config', 'num_stages'),
    ('fusion_backend_config', 'triton_gemm_config', 'num_ctas'),
    ('gemm_backend_config', 'dot_dimension_numbers'),
    ('fusion_config', 'kind'),
    ('sizes',),
)


def _unknown_config(config: dict | None) -> dict:
  """backend_config without the keys this reader turned into record fields."""
  if not config:
    return {}
  config = json.loads(json.dumps(config))
  for path in _KNOWN_CONFIG:
    node = config
    for key in path[:-1]:
      node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.pop(path[-1], None)

  def prune(node):
    if isinstance(node, dict):
      return {k: prune(v) for k, v in node.items()
              if not (isinstance(v, dict) and not prune(v))}
    return node
  return prune(config)


def _int(value) -> int | None:
  try:
    return int(value)
  except (TypeError, ValueError):
    return None


def _positions_dim_of(side_shape: Shape, free: list, positions: int | None):
  """The free dimension of the positions side that carries N."""
  if not free:
    return None
  if positions:
    exact = [d for d in free if side_shape.dims[d] == positions]
    if exact:
      return exact[0]
    multiple = [d for d in free if side_shape.dims[d] % positions == 0
                and side_shape.dims[d] > positions]
    if multiple:
      return multiple[0]
  return max(free, key=lambda d: side_shape.dims[d])


def _dot_roles(module: Module, kernel: Instruction, caller: Computation,
               dependent: set, positions: int | None) -> dict:
  """Describes the dot of a GEMM kernel: shapes, which side has the positions,
  and which dims of the kernel output carry positions, features and split-K."""
  computation = _kernel_computation(module, kernel)
  if kernel.opcode == 'custom-call':
    config = (kernel.backend_config or {}).get('gemm_backend_config', {})
    raw = config.get('dot_dimension_numbers', {})
    numbers = {f'{side}_{kind}_dims': [int(v) for v in raw.get(
        f'{side}_{kind}_dimensions', [])] for side in ('lhs', 'rhs')
               for kind in ('contracting', 'batch')}
    operands = [caller.by_name[o] for o in kernel.operands[:2]]
    lhs, rhs = operands[0].shape, operands[1].shape
    side_dependent = [o.name in dependent for o in operands]
    dot_computation, dot = caller, kernel
    output = kernel.shape[0] if isinstance(kernel.shape, tuple) else kernel.shape
    dot_output = output
    root_of = lambda dims: dims  # the custom call's output is the dot's
  elif computation is not None:
    dependent_params = {i for i, o in enumerate(kernel.operands) if o in dependent}
    located = _locate_dot(module, computation, dependent_params)
    if located is None:
      return {}
    dot_computation, dot, inner = located
    numbers = _dot_dimension_numbers(dot)
    by_name = dot_computation.by_name
    lhs, rhs = by_name[dot.operands[0]].shape, by_name[dot.operands[1]].shape
    side_dependent = [o in inner for o in dot.operands[:2]]
    dot_output = dot.shape
    root_of = lambda dims: _to_root(dot_computation, dot, dims) if (
        dot_computation is computation) else {k: None for k in dims}
  elif kernel.opcode == 'dot':
    numbers = _dot_dimension_numbers(kernel)
    operands = [caller.by_name[o] for o in kernel.operands[:2]]
    lhs, rhs = operands[0].shape, operands[1].shape
    side_dependent = [o.name in dependent for o in operands]
    dot_computation, dot = caller, kernel
    dot_output = kernel.shape
    root_of = lambda dims: dims
  else:
    return {}
  lhs_free = _free_dims(len(lhs.dims), numbers['lhs_contracting_dims'],
                        numbers['lhs_batch_dims'])
  rhs_free = _free_dims(len(rhs.dims), numbers['rhs_contracting_dims'],
                        numbers['rhs_batch_dims'])
  batch = len(numbers['lhs_batch_dims'])
  # Output dims of a dot: batch, then lhs free, then rhs free.
  lhs_out = {d: batch + i for i, d in enumerate(lhs_free)}
  rhs_out = {d: batch + len(lhs_free) + i for i, d in enumerate(rhs_free)}
  sides = {'lhs': (lhs, lhs_free, lhs_out), 'rhs': (rhs, rhs_free, rhs_out)}
  if side_dependent[0] and not side_dependent[1]:
    positions_side = 'lhs'
  elif side_dependent[1] and not side_dependent[0]:
    positions_side = 'rhs'
  elif side_dependent[0] and side_dependent[1]:
    positions_side = 'lhs'
    if positions and not any(lhs.dims[d] == positions for d in lhs_free) and any(
        rhs.dims[d] == positions for d in rhs_free):
      positions_side = 'rhs'
  else:
    positions_side = None
  roles = {'positions': None, 'features': None}
  if positions_side:
    shape, free, out = sides[positions_side]
    position_dim = _positions_dim_of(shape, free, positions)
    roles['positions'] = out.get(position_dim)
    w_shape, w_free, w_out = sides['rhs' if positions_side == 'lhs' else 'lhs']
    if w_free:
      roles['features'] = w_out[max(w_free, key=lambda d: w_shape.dims[d])]
  weight_side = 1 if positions_side != 'rhs' else 0
  weight_batch = numbers['rhs_batch_dims' if weight_side else 'lhs_batch_dims']
  for i in range(batch):
    # A batch dim cut out of the weights' contraction is split-K; one that is a
    # whole dimension of the weights (experts, heads) is a genuine batch.
    if _is_whole_weight_dim(module, caller, kernel, dot_computation, dot,
                            weight_side, weight_batch[i]) is not True:
      roles[f'batch{i}'] = i
  mapped = root_of(roles)
  return dict(dot_lhs=lhs, dot_rhs=rhs, dot_output=dot_output,
              dot_dimension_numbers=numbers, positions_operand=positions_side,
              dot_positions_dim=roles['positions'],
              positions_dim=mapped.get('positions'),
              features_dim=mapped.get('features'),
              batch_dims=[mapped.get(f'batch{i}') for i in range(batch)
                          if f'batch{i}' in roles])


def _is_whole_weight_dim(module: Module, caller: Computation, kernel: Instruction,
                         dot_computation: Computation, dot: Instruction,
                         side: int, dim: int) -> bool | None:
  """Whether dim `dim` of the dot's operand `side` is a whole dimension of an
  entry parameter (a genuine batch such as experts), rather than a slice of a
  larger one (split-K cut out of the contraction). None if it cannot be traced."""
  def back(computation, name, dim):
    by_name = computation.by_name
    while True:
      inst = by_name[name]
      if inst.opcode == 'parameter':
        return computation, inst, dim
      if not inst.operands or inst.operands[0] not in by_name:
        return None
      operand = by_name[inst.operands[0]]
      if inst.opcode in ('bitcast', 'reshape'):
        dim = _bitcast_dim(inst.shape, operand.shape, dim, exact=True)
        if dim is None:
          return computation, None, None
      elif inst.opcode == 'transpose':
        dim = _ints(inst.attributes.get('dimensions', ''))[dim]
      elif inst.opcode not in ('convert', 'copy'):
        return None
      name = operand.name
  found = back(dot_computation, dot.operands[side], dim)
  if found is None:
    return None
  computation, param, dim = found
  if param is None:
    return False
  if computation is _kernel_computation(module, kernel):
    operand = kernel.operands[int(param.attributes['_arg'])]
    found = back(caller, operand, dim)
    if found is None:
      return None
    computation, param, dim = found
    if param is None:
      return False
  return True


def _split_k_dim(module: Module, kernel: Instruction, caller: Computation,
                 batch_dims: list) -> tuple:
  """(output dim of `kernel` that its users reduce-add over, those users):
  the split-K partial sums and the kernels that sum them."""
  candidates = {d for d in batch_dims if d is not None}
  split_dim, reducers = None, []
  for user in caller.instructions if candidates else ():
    if kernel.name not in user.operands:
      continue
    reduced = set()
    if user.opcode == 'reduce' and user.operands[0] == kernel.name:
      reduced = set(_ints(user.attributes.get('dimensions', '')))
    computation = _kernel_computation(module, user) if user.opcode == 'fusion' else None
    if computation is not None:
      param = computation.parameter(user.operands.index(kernel.name))
      reachable = {param.name}
      for inst in computation.instructions:
        if inst.operands and inst.operands[0] in reachable:
          if inst.opcode == 'reduce':
            reduced |= set(_ints(inst.attributes.get('dimensions', '')))
          elif inst.opcode in ('convert', 'bitcast', 'copy'):
            reachable.add(inst.name)
    if reduced & candidates:
      split_dim = min(reduced & candidates)
      reducers.append(user.name)
  return split_dim, reducers


def _weight_scopes(caller: Computation, inst: Instruction, dependent: set) -> list:
  """Scopes of the weight parameters a kernel reads (merged GEMMs read several).

  Operands that do not depend on the positions are followed back to the
  parameters they come from.
  """
  by_name, scopes, stack, seen = caller.by_name, [], list(inst.operands), set()
  while stack:
    name = stack.pop(0)
    if name in seen or name in dependent or name not in by_name:
      continue
    seen.add(name)
    found = by_name[name]
    if found.opcode == 'parameter':
      scope = _scope(found.op_name)
      if scope:
        scopes.append(scope)
    else:
      stack.extend(found.operands)
  return scopes


def _tiles(kernel: Instruction, roles: dict, computation) -> dict:
  config = (kernel.backend_config or {}).get('fusion_backend_config') or {}
  out = {}
  gemm = config.get('triton_gemm_config')
  if gemm:  # older XLA: block_m along the lhs free dim, block_n along the rhs
    block_m, block_n = _int(gemm.get('block_m')), _int(gemm.get('block_n'))
    swapped = roles.get('positions_operand') == 'rhs'
    out.update(tile_positions=block_n if swapped else block_m,
               tile_features=block_m if swapped else block_n,
               block_k=_int(gemm.get('block_k')),
               split_k=_int(gemm.get('split_k')),
               num_warps=_int(gemm.get('num_warps')),
               num_stages=_int(gemm.get('num_stages')),
               num_ctas=_int(gemm.get('num_ctas')))
  block = config.get('block_level_fusion_config')
  if block:
    out.update(num_warps=_int(block.get('num_warps')),
               num_stages=_int(block.get('num_stages')),
               num_ctas=_int(block.get('num_ctas')))
    tiles = block.get('output_tiles') or []
    sizes = [int(s) for s in tiles[0].get('sizes', [])] if tiles else []
    for role in ('positions', 'features'):
      dim = roles.get(f'{role}_dim')
      if dim is not None and dim < len(sizes):
        out[f'tile_{role}'] = sizes[dim]
  if computation is not None:
    for inst in computation.instructions:
      if inst.opcode == 'dot' and inst.backend_config and 'sizes' in inst.backend_config:
        out['block_k'] = _int(inst.backend_config['sizes'][0])
  return out


def _positions_dim_by_size(shape, positions: int | None):
  if not isinstance(shape, Shape) or not positions:
    return None
  matches = [d for d, size in enumerate(shape.dims) if size == positions]
  return matches[0] if matches else None


def parse_thunk_sequence(text: str) -> dict:
  """Kernel name -> (grid, threads, shared memory bytes), from a thunk sequence."""
  launches = {}
  pattern = re.compile(r'\]\s+(\S+)\s+grid:\s*\[([\d,\s]+)\]\s+threads:\s*'
                       r'\[([\d,\s]+)\](?:\s+shared_memory:\s*(\d+))?')
  for line in text.splitlines():
    match = pattern.search(line)
    if match:
      launches[match.group(1)] = (_ints(match.group(2)), _ints(match.group(3)),
                                  _int(match.group(4)))
  return launches


def gemv_functions(llvm_files, prefix: str = '') -> dict:
  """XLA:CPU kernel name -> GEMV function name, from LLVM IR dump files.

  A file `<prefix>dot.3_elemental_kernel_module.ir-no-opt.ll` holds the code of
  HLO instruction `dot.3`; XLA names an emitted GEMV
  `{col,row}_major_gemv_<type>_<tile_rows>_<tile_cols>_<m>_<k>`.
  """
  found = {}
  for path in llvm_files:
    path = pathlib.Path(path)
    name = path.name[len(prefix):] if path.name.startswith(prefix) else path.name
    match = re.match(r'(.+?)_(?:elemental_)?kernel_module\.ir', name)
    if not match:
      continue
    gemv = _GEMV_FUNCTION.search(path.read_text(errors='replace'))
    if gemv:
      found[match.group(1)] = gemv.group(1)
  return found


def _kernel_level(module: Module):
  """(computation, instruction) of every launched kernel, walking control flow."""
  seen, order = set(), []

  def walk(computation):
    if computation.name in seen:
      return
    seen.add(computation.name)
    for inst in computation.instructions:
      for key in ('body', 'condition', 'to_apply', 'true_computation',
                  'false_computation'):
        if inst.opcode in ('while', 'call', 'conditional') and inst.called(key):
          walk(module.computations[inst.called(key)])
      if inst.opcode == 'conditional':
        for name in re.findall(r'%?([\w.\-]+)', inst.attributes.get(
            'branch_computations', '')):
          if name in module.computations:
            walk(module.computations[name])
      if inst.opcode not in _NOT_KERNELS:
        order.append((computation, inst))
  walk(module.entry)
  return order


def read_kernels(text: str, positions: int | None = None, *,
                 thunk_text: str | None = None,
                 gemv_function_names: dict | None = None,
                 activation_parameters=None) -> list:
  """The kernels of one optimized HLO module, with their tiling.

  Args:
    text: optimized HLO (`compiled.as_text()` or `*after_optimizations.txt`).
    positions: N of this module; default: the leading dimension of the first
      activation parameter.
    thunk_text: the module's `*thunk_sequence.txt`, for launch grids.
    gemv_function_names: XLA:CPU kernel name -> GEMV function (LLVM IR dump).
    activation_parameters: indices of the entry parameters that carry the
      positions; default: those JAX names `args[...]`, else parameter 0.

  Raises:
    HloParseError: if `text` is not HLO.
  """
  return list(read_module(text, positions, thunk_text=thunk_text,
                          gemv_function_names=gemv_function_names,
                          activation_parameters=activation_parameters).kernels)


def read_module(text: str, positions: int | None = None, *, file=None,
                thunk_text: str | None = None,
                gemv_function_names: dict | None = None,
                activation_parameters=None) -> ModuleKernels:
  """Like read_kernels, with the module's name, platform and positions."""
  module = parse_module(text)
  platform = _platform(module)
  entry = module.entry
  activations = _activation_parameters(entry, activation_parameters)
  if positions is None:
    positions = _default_positions(entry, activations)
  launches = parse_thunk_sequence(thunk_text) if thunk_text else {}
  gemv_function_names = gemv_function_names or {}
  dependent_by_computation, split_k_reducers = {}, {}
  kernels = []
  level = _kernel_level(module)
  for caller, inst in level:
    if caller.name not in dependent_by_computation:
      seeds = activations if caller.is_entry else {
          i.name for i in caller.instructions if i.opcode == 'parameter'}
      dependent_by_computation[caller.name] = _dependent(caller, seeds)
    dependent = dependent_by_computation[caller.name]
    computation = _kernel_computation(module, inst) if inst.opcode == 'fusion' else None
    kind = _classify(inst, computation, module, platform)
    op_name = inst.op_name
    inner_ops = []
    if computation is not None:
      for _, inner in _find(computation, module, ('dot', 'ragged-dot', 'reduce')):
        if _is_dot_op(inner.op_name) or inner.opcode != 'reduce':
          inner_ops.append(_scope(inner.op_name))
    source_op = _scope(op_name)
    # Some kernels lose their metadata (XLA:CPU dots): name them by the ops
    # inside or by the weights they read.
    if source_op is None:
      # A split-K GEMM may lose its metadata while its reduce keeps it.
      users = [_scope(u.op_name) for u in caller.users.get(inst.name, [])
               if _is_dot_op(u.op_name)]
      weights = _weight_scopes(caller, inst, dependent)
      source_op = next((s for s in inner_ops + users + weights if s), None)
    source_ops = tuple(dict.fromkeys(
        s for s in [source_op] + inner_ops if s))
    fields = dict(name=inst.name, source_op=source_op, kind=kind,
                  opcode=inst.opcode, op_name=op_name, source_ops=source_ops,
                  operand_shapes=tuple(caller.by_name[o].shape
                                       for o in inst.operands
                                       if o in caller.by_name),
                  output_shape=inst.shape, positions=positions,
                  unknown_config=_unknown_config(inst.backend_config))
    if inst.opcode == 'fusion':
      backend_kind = ((inst.backend_config or {}).get('fusion_backend_config') or {}
                      ).get('kind') or ((inst.backend_config or {}).get(
                          'fusion_config') or {}).get('kind')
      fields['fusion_kind'] = backend_kind or inst.attributes.get('kind')
    if kind in ('triton_gemm', 'cublas', 'cpu_ynn', 'cpu_dot', 'cpu_gemv'):
      roles = _dot_roles(module, inst, caller, dependent, positions)
      batch_dims = roles.pop('batch_dims', [])
      roles.pop('dot_positions_dim', None)
      fields.update(roles)
      split_dim, reducers = _split_k_dim(module, inst, caller, batch_dims)
      if split_dim is not None:
        split_k_reducers.update({r: inst.name for r in reducers})
        fields['split_k_dim'] = split_dim
        fields['split_k'] = inst.shape.dims[split_dim]
      weights = list(dict.fromkeys(_weight_scopes(caller, inst, dependent)))
      if len(weights) > 1:  # one GEMM over concatenated weights (gate and up)
        fields['source_ops'] = tuple(dict.fromkeys(source_ops + tuple(weights)))
    else:
      fields['positions_dim'] = _positions_dim_by_size(inst.shape, positions)
      if inst.name in split_k_reducers:  # sums split-K partials: not a GEMV
        fields.update(kind='other', split_k_of=split_k_reducers[inst.name])
    tiles = _tiles(inst, fields, computation)
    if 'split_k' in fields and tiles.get('split_k') is None:
      tiles.pop('split_k', None)
    fields.update(tiles)
    if kind in ('triton_gemm',) and fields.get('split_k') is None:
      fields['split_k'] = 1
    launch = launches.get(inst.name.replace('.', '_')) or launches.get(inst.name)
    if launch:
      grid, threads, shared = launch
      fields.update(grid=grid, grid_blocks=math.prod(grid),
                    threads_per_block=math.prod(threads),
                    shared_memory_bytes=shared)
    function = gemv_function_names.get(inst.name)
    if function:
      match = _GEMV_FUNCTION.search(function)
      fields.update(llvm_function=function, kind='cpu_gemv',
                    tile_features=int(match.group(4)),
                    block_k=int(match.group(5)), tile_positions=1)
    kernels.append(Kernel(**fields))
  # Kernels XLA deduplicated share one launch entry, under the first one's name.
  launch_of = {}
  for kernel, (_, inst) in zip(kernels, level):
    group = inst.metadata.get('deduplicated_name')
    if group and kernel.grid is not None:
      launch_of.setdefault(group, kernel)
  for i, (kernel, (_, inst)) in enumerate(zip(kernels, level)):
    twin = launch_of.get(inst.metadata.get('deduplicated_name'))
    if kernel.grid is None and twin is not None:
      kernels[i] = dataclasses.replace(
          kernel, grid=twin.grid, grid_blocks=twin.grid_blocks,
          threads_per_block=twin.threads_per_block,
          shared_memory_bytes=twin.shared_memory_bytes)
  # A reduce over a GEMM's output (the expert sum of a rewritten ragged dot, an
  # epilogue) is not itself a GEMV.
  gemms = {k.name for k in kernels if k.kind in ('triton_gemm', 'cublas')}
  by_name = {inst.name: inst for _, inst in level}
  kernels = [dataclasses.replace(k, kind='other') if k.kind == 'gpu_gemv_reduce'
             and set(by_name[k.name].operands) & gemms else k for k in kernels]
  return ModuleKernels(module.name, None, positions, platform, tuple(kernels))


def read_dump(folder, positions: int | None = None) -> list:
  """Every module of an `--xla_dump_to` folder (or one HLO file) as ModuleKernels.

  Raises:
    HloParseError: if the path holds no optimized HLO.
  """
  path = pathlib.Path(folder)
  if path.is_file():
    try:
      text = path.read_text()
    except UnicodeDecodeError:
      raise HloParseError(f'{path} is not HLO text: it is not UTF-8 text.') from None
    return [dataclasses.replace(read_module(text, positions), file=str(path))]
  if not path.is_dir():
    raise HloParseError(f'{path} does not exist.')
  dumped = dump_files(path)
  if not dumped:
    raise HloParseError(f'{path} holds no *after_optimizations.txt file; dump with '
                        '--xla_dump_to=DIR --xla_dump_hlo_as_text.')
  return [dataclasses.replace(
      read_module(file.read_text(), positions, thunk_text=thunk_text,
                  gemv_function_names=gemv), file=str(file))
          for file, thunk_text, gemv in dumped]


def dump_files(folder) -> list:
  """(optimized HLO file, thunk sequence text or None, GEMV function names) of
  every module in an `--xla_dump_to` folder."""
  path = pathlib.Path(folder)
  found = []
  for file in sorted(path.glob('*after_optimizations.txt')):
    prefix = file.name.split('after_optimizations')[0]
    module_prefix = re.sub(r'(sm_[\d.]+a?_gpu_|cpu_)$', '', prefix)
    thunk = sorted(path.glob(f'{module_prefix}thunk_sequence.txt'))
    llvm = sorted(path.glob(f'{module_prefix}*kernel_module.ir-no-opt.ll'))
    found.append((file, thunk[0].read_text() if thunk else None,
                  gemv_functions(llvm, module_prefix)))
  return found



# What XLA says of one compiled program: its cost and memory analyses, its
# optimized HLO and, from its dump, the kernels that run.


def cost_dict(compiled) -> dict:
  """compiled.cost_analysis(): flops, bytes accessed (and per operand),
  transcendentals, optimal_seconds where the backend has them."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device
    cost = cost[0] if cost else {}
  keep = {}
  for key, value in (cost or {}).items():
    if key in ('flops', 'bytes accessed', 'transcendentals', 'optimal_seconds',
               'utilization') or key.startswith('bytes accessed'):
      keep[key] = float(value)
  return keep


def memory_dict(compiled) -> dict:
  """compiled.memory_analysis(): argument, output, temp, alias and code bytes."""
  memory = compiled.memory_analysis()
  if memory is None:
    return {}
  names = ('argument_size_in_bytes', 'output_size_in_bytes',
           'temp_size_in_bytes', 'alias_size_in_bytes',
           'generated_code_size_in_bytes')
  return {n: int(getattr(memory, n)) for n in names if hasattr(memory, n)}


@dataclasses.dataclass(frozen=True)
class CompiledHlo:
  """The optimized HLO of one forward at one N, with where its tiling came from."""
  positions: int
  target: str
  tiling_source: str
  placeholder: bool
  hlo_text: str
  thunk_text: str | None
  gemv_function_names: dict  # XLA:CPU kernel -> GEMV function (LLVM IR dump)
  compiler_options: dict
  xla_flags: tuple
  lower_s: float
  compile_s: float
  device_kind: str
  cost: dict  # compiled.cost_analysis(): flops, bytes accessed
  memory: dict  # compiled.memory_analysis(): argument, output, temp bytes

  @property
  def is_tpu(self) -> bool:
    return self.device_kind.startswith('TPU')

  def program(self):
    """The fusions of an XLA:TPU module with the compiler's own estimate
    (hlo_tpu.Program)."""
    from nfp_jax import hlo_tpu  # pylint: disable=g-import-not-at-top
    return hlo_tpu.read_program(self.hlo_text, self.positions, cost=self.cost)

  def kernels(self) -> list:
    """The kernel records of this module (hlo.Kernel; hlo_tpu.Fusion on TPU)."""
    if self.is_tpu:
      return list(self.program().fusions)
    return read_kernels(self.hlo_text, self.positions,
                            thunk_text=self.thunk_text,
                            gemv_function_names=self.gemv_function_names)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def dump_options(options: dict | None, folder) -> dict:
  """Compiler options that also dump the program into `folder` (as text), so
  that read_compiled finds its thunk sequence and GEMV function names."""
  return dict(options or {}, xla_dump_to=str(folder), xla_dump_hlo_as_text=True)


def read_compiled(compiled, positions: int, dump_folder=None, *, target: str,
                  tiling_source: str = 'xla-default', placeholder: bool = False,
                  compiler_options: dict | None = None, xla_flags: tuple = (),
                  lower_s: float = 0.0, compile_s: float = 0.0,
                  device_kind: str = '') -> CompiledHlo:
  """The one reader of a compiled executable (deviceless compiles, sweeps,
  comparisons and the probe alike): its optimized HLO, cost and memory
  analyses and, when it was compiled with dump_options(..., dump_folder), the
  thunk sequence and GEMV names its kernels need."""
  dumped = dump_files(dump_folder) if dump_folder else []
  thunk_text, gemv = (dumped[-1][1], dumped[-1][2]) if dumped else (None, {})
  return CompiledHlo(
      positions=positions, target=target, tiling_source=tiling_source,
      placeholder=placeholder, hlo_text=compiled.as_text(),
      thunk_text=thunk_text, gemv_function_names=gemv,
      compiler_options=dict(compiler_options or {}), xla_flags=tuple(xla_flags),
      lower_s=lower_s, compile_s=compile_s, device_kind=device_kind,
      cost=cost_dict(compiled), memory=memory_dict(compiled))
