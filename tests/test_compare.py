"""The compare CLI on `tiny`: files, fields, resume, bad inputs (exit 2)."""

import json
import os

import pytest

pytest.importorskip('torch', reason='the torch extra is not installed')

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import compare as compare_cli
from nfp_jax import compare
from nfp_jax import config
from tests import cli

FRAMEWORKS = ['jax', 'torch', 'torch-compile']
# A grid of two blocks: torch.compile runs gather and fails on ragged float32.
ARGS = ['--module', 'moe', '--model', 'tiny', '--routing', 'uniform',
        '--impl', 'gather,ragged', '--positions', '1,2,4', '--repeats', '3',
        '--warmup', '1', '--frameworks', ','.join(FRAMEWORKS)]
POSITIONS = [1, 2, 4]


@pytest.fixture(scope='module')
def env(cli_env):
  return cli_env


def run_compare(args, env, timeout=600):
  return cli.run('experiments.compare', args, env, timeout)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, env):
  out = tmp_path_factory.mktemp('compare') / 'run'
  proc = run_compare(ARGS + ['--out', str(out)], env)
  assert proc.returncode == 0, proc.stderr
  return out, proc


def block(impl):
  return config.resolve('moe', 'tiny', dtype='float32', routing='uniform',
                        moe_impl=impl)


def test_files_and_fields(tiny_run):
  out, proc = tiny_run
  grid = json.loads((out / 'compare.json').read_text())
  assert grid['kind'] == 'grid' and len(grid['comparisons']) == 2
  comp = json.loads((out / f"compare-{block('gather').config_id(POSITIONS)}.json"
                     ).read_text())
  assert comp == grid['comparisons'][0]
  assert comp['kind'] == 'compare' and comp['module'] == 'moe'
  assert comp['config']['moe_impl'] == 'gather' and comp['positions'] == POSITIONS
  assert list(comp['frameworks']) == FRAMEWORKS
  for name, fw in comp['frameworks'].items():
    assert fw['status'] == 'ok', (name, fw.get('error'))
    assert fw['t1_s'] > 0 and fw['positions'] == POSITIONS
    for key in ('nfp', 'n_idle'):
      assert set(fw[key]) == {'0.05', '0.1', '0.2'}, (name, key)
      assert all(isinstance(v, int) and v >= 1 for v in fw[key].values())
    assert fw['ratio'][0] == 1.0
    assert set(fw['kernels']) == {'1', '2', '4'}
  # The same block: the same idle-compute baseline in every framework.
  assert len({json.dumps(fw['n_idle']) for fw in comp['frameworks'].values()}) == 1
  jax_kinds = {k['kind'] for k in comp['frameworks']['jax']['kernels']['1']}
  assert jax_kinds & {'cpu_gemv', 'cpu_ynn', 'cpu_dot'}, jax_kinds
  eager_ops = {k['op'] for k in comp['frameworks']['torch']['kernels']['4']}
  assert 'aten::mm' in eager_ops, eager_ops
  compiled_ops = {k['op'] for k in comp['frameworks']['torch-compile']['kernels']['4']}
  assert 'inductor C++ graph' in compiled_ops, compiled_ops
  prov = comp['provenance']
  for key in ('jax', 'torch', 'torch_threads', 'backend', 'git_revision', 'seed'):
    assert key in prov, key
  assert prov['torch_threads'] == len(os.sched_getaffinity(0))
  for comp in grid['comparisons']:
    assert (out / f"compare-{block(comp['config']['moe_impl']).config_id(POSITIONS)}"
            '.png').stat().st_size > 1000
  assert 'NFP(0.1)' in proc.stdout and 'torch-compile' in proc.stdout


def test_failed_framework_is_recorded_and_others_go_on(tiny_run):
  out, proc = tiny_run
  comp = json.loads((out / 'compare.json').read_text())['comparisons'][1]
  assert comp['config']['moe_impl'] == 'ragged'
  failed = comp['frameworks']['torch-compile']
  assert failed['status'] == 'failed' and 'BF16' in failed['error']
  assert comp['frameworks']['torch']['status'] == 'ok'
  assert comp['frameworks']['jax']['status'] == 'ok'
  assert 'Expected inputs of BF16 type' in proc.stdout


def test_results_log_has_every_framework(tiny_run):
  out, _ = tiny_run
  records = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]
  summaries = [r for r in records if r['kind'] == 'summary']
  assert [s['framework'] for s in summaries] == FRAMEWORKS * 2
  assert len({s['config_id'] for s in summaries}) == 6
  # JAX's config_id is the sweep's own.
  assert summaries[0]['config_id'] == block('gather').config_id(POSITIONS)
  points = [r for r in records if r['kind'] == 'point']
  assert len(points) == 3 * 5  # torch-compile of ragged has none
  assert all(len(p['samples_s']) == 3 for p in points)


def test_rerun_skips_finished_frameworks(tiny_run, env):
  out, _ = tiny_run
  before = (out / 'results.jsonl').read_text()
  proc = run_compare(ARGS + ['--out', str(out)], env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr.count('already finished') == 6
  assert (out / 'results.jsonl').read_text() == before


def test_framework_config_ids():
  cfg = config.resolve('dense', 'tiny')
  ids = {f: compare.framework_config_id(cfg, [1, 2], f) for f in compare.FRAMEWORKS}
  assert ids['jax'] == cfg.config_id([1, 2])
  assert len(set(ids.values())) == 3


def test_headline_finds_the_error_inside_an_explanation():
  text = ("TorchRuntimeError: RuntimeError when making fake tensor call\n"
          "  Explanation: ... got RuntimeError('Expected inputs of BF16 type.')")
  assert compare_cli.headline(text) == (
      'TorchRuntimeError: RuntimeError when making fake tensor call: '
      'RuntimeError: Expected inputs of BF16 type.')
  assert compare_cli.headline('ValueError: bad\nmore') == 'ValueError: bad'


BAD = [
    (['--frameworks', 'tensorflow'], 'Unknown framework'),
    (['--frameworks', 'jax,torch,jax'], 'repeats a framework'),
    (['--frameworks', ''], '--frameworks is empty'),
    (['--module', 'layer', '--model', 'tiny'], 'no PyTorch twin'),
    (['--threads', '0'], '--threads must be at least 1'),
    (['--repeats', '2'], '--repeats must be at least 3'),
]


def assert_one_sentence_exit_2(proc, message):
  assert proc.returncode == 2, proc.stderr
  assert message in proc.stderr, proc.stderr
  assert 'Traceback' not in proc.stderr
  assert len([l for l in proc.stderr.splitlines() if l.startswith('error:')]) == 1


@pytest.mark.parametrize('args,message', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input(args, message, tmp_path, env):
  out = tmp_path / 'out'
  if '--out' not in args:
    args = args + ['--out', str(out)]
  proc = run_compare(['--model', 'tiny'] + args, env, timeout=120)
  assert_one_sentence_exit_2(proc, message)
  assert not out.exists()


def test_torch_not_installed(tmp_path, env):
  """A `torch` that cannot be imported, first on the path, stands for none."""
  fake = tmp_path / 'no_torch' / 'torch'
  fake.mkdir(parents=True)
  (fake / '__init__.py').write_text("raise ImportError('No module named torch')\n")
  env = dict(env, PYTHONPATH=os.pathsep.join([str(fake.parent), cli.REPO]))
  proc = run_compare(['--model', 'tiny', '--frameworks', 'jax,torch',
                      '--out', str(tmp_path / 'out')], env, timeout=120)
  assert_one_sentence_exit_2(proc, "pip install -e '.[torch]'")
  proc = run_compare(['--model', 'tiny', '--frameworks', 'jax', '--positions',
                      '1,2', '--repeats', '3', '--out', str(tmp_path / 'jax')],
                     env, timeout=300)
  assert proc.returncode == 0, proc.stderr  # JAX alone needs no torch
