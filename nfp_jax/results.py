"""Result records on disk: provenance, atomic JSON, and a JSONL log that survives kills.

`results.jsonl` holds `"kind": "point"` records (one per N) and one
`"kind": "summary"` record per finished configuration, all carrying `config_id`.
A configuration's lines are appended in one write once it is finished, and
`ResultLog.open` repairs a log cut by a kill (a torn last line, points of a
configuration that never got its summary) before anything else is appended, so
every finished configuration appears exactly once.
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess

import flax
import jax
import jaxlib
import numpy as np

_REPO = pathlib.Path(__file__).resolve().parent.parent


def git_revision() -> str:
  """The project's git revision, with '+dirty' when the tree has changes."""
  try:
    rev = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=_REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=_REPO, check=True, capture_output=True,
                           text=True).stdout.strip()
    return rev + ('+dirty' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def provenance(*, seed: int, xla_flags: str = '', compiler_options=None,
               device=None, **extra) -> dict:
  """Where a number comes from: versions, backend, device, flags, revision, time."""
  device = device or jax.devices()[0]
  return dict(
      jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
      numpy=np.__version__, python=platform.python_version(),
      backend=device.platform, device=str(device), device_kind=device.device_kind,
      host=platform.node(), cpu_count=os.cpu_count(), xla_flags=xla_flags,
      compiler_options=dict(compiler_options or {}), git_revision=git_revision(),
      seed=seed, time=datetime.datetime.now(datetime.timezone.utc).isoformat(),
      **extra)


def to_jsonable(obj):
  """Numpy scalars and arrays, tuples and dataclass dicts to plain JSON types."""
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, float) and not np.isfinite(obj):
    return None
  return obj


def write_json(path, obj) -> None:
  """Writes JSON atomically: a temporary file renamed over the target."""
  path = pathlib.Path(path)
  tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
  tmp.write_text(json.dumps(to_jsonable(obj), indent=1) + '\n')
  os.replace(tmp, path)


def cached(cache_file, key: str, compute, refresh: bool = False,
           verify=None) -> dict:
  """compute() once per key: a JSON cache file of {key: result}, written
  atomically (None: no cache). A file that is not JSON is measured over.
  `verify(result) -> bool`, where given, spot-checks a cached result before it
  is used; a result that fails is computed and cached again."""
  path = pathlib.Path(cache_file) if cache_file else None
  cache = {}
  if path and path.exists():
    try:
      cache = json.loads(path.read_text())
    except ValueError:
      cache = {}
  if key in cache and not refresh and (verify is None or verify(cache[key])):
    return cache[key]
  result = to_jsonable(compute())
  if path:
    cache[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, cache)
  return result


def read_jsonl(path) -> list[dict]:
  """The parseable, newline-terminated records of a JSONL file."""
  records = []
  try:
    text = pathlib.Path(path).read_text()
  except FileNotFoundError:
    return records
  for line in text.splitlines(keepends=True):
    if not line.endswith('\n'):
      break  # torn last line
    try:
      records.append(json.loads(line))
    except ValueError:
      continue
  return records


class ResultLog:
  """results.jsonl of one output folder."""

  def __init__(self, path):
    self.path = pathlib.Path(path)

  @classmethod
  def open(cls, folder) -> 'ResultLog':
    """Opens (and repairs) the log of `folder`, keeping finished configurations."""
    log = cls(pathlib.Path(folder) / 'results.jsonl')
    if log.path.exists():
      records = read_jsonl(log.path)
      done = {r.get('config_id') for r in records if r.get('kind') == 'summary'}
      keep = [r for r in records if r.get('config_id') in done]
      if len(keep) != len(records) or log.path.read_text().count('\n') != len(records):
        tmp = log.path.with_name(f'.results.jsonl.tmp{os.getpid()}')
        tmp.write_text(''.join(json.dumps(r) + '\n' for r in keep))
        os.replace(tmp, log.path)
    return log

  def summaries(self) -> dict[str, dict]:
    return {r['config_id']: r for r in read_jsonl(self.path)
            if r.get('kind') == 'summary'}

  def append(self, records: list[dict]) -> None:
    """Appends records in one write, then syncs."""
    data = ''.join(json.dumps(to_jsonable(r)) + '\n' for r in records).encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      view = memoryview(data)
      while view:
        view = view[os.write(fd, view):]
      os.fsync(fd)
    finally:
      os.close(fd)
