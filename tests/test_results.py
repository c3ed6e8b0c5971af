"""The result log survives kills: torn lines and unfinished configurations."""

import json

from nfp_jax import results


def test_append_and_repair(tmp_path):
  log = results.ResultLog.open(tmp_path)
  log.append([{'kind': 'point', 'config_id': 'a', 'positions': 1},
              {'kind': 'summary', 'config_id': 'a'}])
  with open(log.path, 'a') as f:  # a kill in the middle of config b
    f.write(json.dumps({'kind': 'point', 'config_id': 'b'}) + '\n')
    f.write('{"kind": "summ')
  log = results.ResultLog.open(tmp_path)
  records = results.read_jsonl(log.path)
  assert [r['config_id'] for r in records] == ['a', 'a']
  assert log.path.read_text().endswith('\n')
  assert list(log.summaries()) == ['a']


def test_write_json_is_atomic_and_plain(tmp_path):
  import numpy as np
  path = tmp_path / 'x.json'
  results.write_json(path, {'a': np.float32(1.5), 'b': (1, 2), 'c': float('nan')})
  assert json.loads(path.read_text()) == {'a': 1.5, 'b': [1, 2], 'c': None}
  assert [p.name for p in tmp_path.iterdir()] == ['x.json']


def test_provenance_fields():
  prov = results.provenance(seed=3, xla_flags='--x')
  for key in ('jax', 'jaxlib', 'flax', 'backend', 'device', 'xla_flags',
              'compiler_options', 'git_revision', 'seed', 'time'):
    assert key in prov
