"""The library sweep: a failure at one N becomes a failed point; the rest goes on."""

import json

import pytest

from nfp_jax import blocks
from nfp_jax import compile as compile_lib
from nfp_jax import config
from nfp_jax import errors
from nfp_jax import hardware
from nfp_jax import measure
from nfp_jax import predict
from nfp_jax import sweep
from nfp_jax import targets

BALANCE = hardware.Balance(name='test', dtype='float32', peak_flops=1e11,
                           bandwidth=1e10, source='test')


def test_failed_point_is_recorded(monkeypatch):
  real = measure.compile_forward

  def flaky(fn, args, options=None, **kwargs):
    if args[1].shape[0] == 2:
      raise MemoryError('RESOURCE_EXHAUSTED: out of memory while allocating')
    return real(fn, args, options, **kwargs)

  monkeypatch.setattr(measure, 'compile_forward', flaky)
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  result = sweep.measure_block(cfg, [1, 2, 4], plan=measure.RoundPlan.fixed(3), warmup=1, balance=BALANCE)
  status = {p['positions']: p['status'] for p in result.points}
  assert status == {1: 'ok', 2: 'failed', 4: 'ok'}
  failed = [p for p in result.points if p['status'] == 'failed'][0]
  assert 'RESOURCE_EXHAUSTED' in failed['error']
  assert result.summary['positions'] == [1, 4]
  assert result.summary['failed_positions'] == [2]


def test_failure_at_one_position_raises(monkeypatch):
  def broken(fn, args, options=None, **kwargs):
    raise RuntimeError('cannot compile')
  monkeypatch.setattr(measure, 'compile_forward', broken)
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  with pytest.raises(RuntimeError):
    sweep.measure_block(cfg, [1, 2], plan=measure.RoundPlan.fixed(3), balance=BALANCE)


def test_summary_fields_on_a_real_run():
  cfg = config.resolve('attention', 'tiny', dtype='float32', kv_len=16)
  result = sweep.measure_block(cfg, [1, 2, 3], plan=measure.RoundPlan.fixed(4), warmup=1, balance=BALANCE)
  s = result.summary
  assert s['ratio'][0] == 1.0 and len(s['ratio_ci']) == 3
  assert set(s['nfp']) == {'0.05', '0.1', '0.2'}
  assert all(s['nfp_range'][k][0] <= s['nfp'][k] <= s['nfp_range'][k][1]
             for k in s['nfp'])
  assert s['timed_s'] > 0 and s['wall_s'] >= s['timed_s']
  assert all(len(p['samples_s']) == 4 for p in result.points)


def test_check_fits_names_what_is_needed_and_what_there_is():
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  need = blocks.state_bytes(cfg)
  assert need == 3 * cfg.d_model * cfg.d_ff * 4
  sweep.check_fits(cfg, need)
  sweep.check_fits(cfg, None)
  with pytest.raises(errors.ConfigError, match='GiB available'):
    sweep.check_fits(cfg, need - 1)


def test_a_sweep_compiles_each_position_once(monkeypatch):
  """The executables that are timed are the ones whose kernels are priced."""
  real = measure.compile_forward
  calls = []

  def counted(fn, args, options=None, **kwargs):
    calls.append(kwargs.get('positions'))
    return real(fn, args, options, **kwargs)

  def no_second_compile(*args, **kwargs):
    raise AssertionError('a sweep compiled a position twice')

  monkeypatch.setattr(measure, 'compile_forward', counted)
  monkeypatch.setattr(compile_lib, 'compile_hlo_many', no_second_compile)
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  result = sweep.measure_block(cfg, [1, 2, 4], plan=measure.RoundPlan.fixed(3), warmup=1, balance=BALANCE)
  assert calls == [1, 2, 4]
  assert sorted(result.compiled) == [1, 2, 4]
  assert all(c.kernels() for c in result.compiled.values())
  prediction = predict.predict(cfg, [1, 2, 4], target=targets.resolve('cpu'),
                               balance=BALANCE, compiled=[result.compiled[n]
                                                          for n in (1, 2, 4)])
  assert len(prediction.t_pred_s) == 3 and prediction.compile_s > 0
  assert prediction.composition.startswith('compiled')


def test_overhead_chain_kernels_are_counted_from_the_hlo():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  tiny = jnp.ones((8, 8), jnp.float32)
  counts = [hardware.kernel_count(hardware._chain_of_dots(k), (tiny, tiny))
            for k in (1, 33)]
  # Each dot and its tanh compile to separate kernels on XLA:CPU here; what
  # matters is that the count comes from the compiled program and grows.
  assert counts[1] > counts[0] >= 1
  assert counts[1] - counts[0] >= 32


def test_balance_spot_check_with_a_fake_timer(tmp_path):
  cache = tmp_path / 'hardware.json'
  key = f'{hardware.machine_key()}|float32|v{hardware._CACHE_VERSION}'
  fields = dict(BALANCE.to_dict(), details={'matmul_flops': {'1024': 2e11}})
  fields.pop('ridge', None)
  cache.write_text(json.dumps({key: fields}))
  seconds = 2 * 1024**3 / 2e11
  kept = hardware.local_balance('float32', str(cache), timer=lambda: seconds * 1.1)
  assert kept.peak_flops == BALANCE.peak_flops  # within the limit: the cache
  lines = []
  measured = []
  real = hardware.measure_local
  try:
    hardware.measure_local = lambda dtype, device=None: measured.append(dtype) or BALANCE
    hardware.local_balance('float32', str(cache), timer=lambda: seconds * 2,
                           progress=lines.append)
  finally:
    hardware.measure_local = real
  assert measured == ['float32'] and 'measuring the balance again' in lines[0]
