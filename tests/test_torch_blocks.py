"""PyTorch twins vs the Flax blocks: same weights, inputs, routing and masks."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='the torch extra is not installed')

# pylint: disable=g-import-not-at-top,wrong-import-position
from nfp_jax import blocks
from nfp_jax import compare
from nfp_jax import config
from nfp_jax import hardware
from nfp_jax import measure
from nfp_jax import torch_blocks
from nfp_jax.torch_blocks import run

# Per compute dtype: tolerance on the output's max-abs scale. The two frameworks
# sum in different orders; bfloat16 also rounds intermediates (scores, expert
# outputs) at different points.
TOLERANCE = {'float32': 1e-5, 'bfloat16': 3e-2}


def outputs(cfg, positions, module=None):
  """(Flax output, twin output) as float64 arrays, same inputs."""
  fn, state = blocks.forward(cfg)
  expected = fn(state, *blocks.inputs(cfg, positions, positions + 3))
  twin = module if module is not None else torch_blocks.from_flax(cfg, state)
  with torch.inference_mode():
    out = twin(*torch_blocks.inputs(cfg, positions, positions + 3))
  assert out.dtype == torch_blocks.modules.DTYPES[cfg.dtype]
  assert tuple(out.shape) == tuple(expected.shape)
  return (np.asarray(expected.astype(jnp.float32), np.float64),
          out.float().numpy().astype(np.float64))


def check(expected, out, dtype):
  assert np.all(np.isfinite(expected)) and np.all(np.isfinite(out))
  scale = np.max(np.abs(expected))
  assert scale > 0
  np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_linear(dtype):
  cfg = config.resolve('linear', 'tiny', dtype=dtype,
                       overrides={'d_model': 48, 'd_ff': 80})
  check(*outputs(cfg, 3), dtype)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('positions', [1, 6])
def test_dense(dtype, positions):
  cfg = config.resolve('dense', 'tiny', dtype=dtype)
  check(*outputs(cfg, positions), dtype)


@pytest.mark.parametrize('impl', [i for i in config.MOE_IMPLS if i != 'tokamax'])  # JAX-only impl
@pytest.mark.parametrize('routing', ['learned', 'uniform', 'zipf:1.5'])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_moe(impl, routing, dtype):
  cfg = config.resolve('moe', 'tiny', dtype=dtype, moe_impl=impl, routing=routing)
  check(*outputs(cfg, 5), dtype)


def test_moe_without_shared_experts_and_storage_dtype_apart():
  cfg = config.resolve('moe', 'tiny', overrides=dict(n_shared_experts=0),
                       dtype='float32', param_dtype='bfloat16',
                       moe_impl='ragged', routing='uniform')
  twin = torch_blocks.build(cfg)
  assert twin.shared is None and twin.gate.dtype == torch.bfloat16
  check(*outputs(cfg, 4, twin), 'float32')


def test_forced_routing_is_the_flax_routing():
  cfg = config.resolve('moe', 'tiny', dtype='float32', routing='zipf:1.2')
  x, ids = torch_blocks.inputs(cfg, 4, 8)
  _, jax_ids = blocks.inputs(cfg, 4, 8)
  np.testing.assert_array_equal(ids.numpy(), np.asarray(jax_ids))
  chosen, weights = torch_blocks.build(cfg).route(x, ids)
  np.testing.assert_array_equal(chosen.numpy(), np.asarray(jax_ids))
  np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, rtol=1e-6)


@pytest.mark.parametrize('mask', config.MASKS)
@pytest.mark.parametrize('impl', config.ATTN_IMPLS)
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_attention(mask, impl, dtype):
  cfg = config.resolve('attention', 'tiny', dtype=dtype, mask=mask,
                       attn_impl=impl, kv_len=48)
  check(*outputs(cfg, 5), dtype)


def test_masks_differ():
  """The causal and block twins see different keys (the mask is not ignored)."""
  results = {mask: outputs(config.resolve('attention', 'tiny', dtype='float32',
                                          mask=mask, kv_len=8), 4)[1]
             for mask in config.MASKS}
  np.testing.assert_allclose(results['causal'][-1], results['block'][-1],
                             rtol=1e-5)  # the last position sees all in both
  assert not np.allclose(results['causal'][0], results['block'][0])


def test_bfloat16_weights_are_copied_bit_for_bit():
  cfg = config.resolve('dense', 'tiny', dtype='bfloat16')
  _, state = blocks.forward(cfg)
  twin = torch_blocks.from_flax(cfg, state)
  flax_bits = np.asarray(state['gate'][...]).view(np.uint16)
  np.testing.assert_array_equal(twin.gate.view(torch.int16).numpy().view(np.uint16),
                                flax_bits)


def test_no_twin_of_a_layer():
  cfg = config.resolve('layer', 'tiny')
  with pytest.raises(ValueError, match='No PyTorch twin'):
    torch_blocks.build(cfg)


def test_eager_prepare_runs_and_names_its_kernels():
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  forward = run.prepare(run.twin(cfg), cfg, 3, 8)
  expected, _ = outputs(cfg, 3)
  np.testing.assert_allclose(forward.call().numpy(), expected, rtol=0,
                             atol=TOLERANCE['float32'] * np.max(np.abs(expected)))
  ops = {k['op']: k['calls'] for k in forward.kernels}
  assert ops.get('aten::mm') == 3  # gate, up, down


def test_compiled_twin_matches_and_runs_inductor_code():
  cfg = config.resolve('moe', 'tiny', dtype='float32', routing='uniform')
  module = run.twin(cfg, 'compile')
  for n in (1, 2):
    forward = run.prepare(module, cfg, n, 4)
    expected, _ = outputs(cfg, n)
    out = forward.call().numpy()
    check(expected, out, 'float32')
    ops = [k['op'] for k in forward.kernels]
    assert 'inductor C++ graph' in ops, ops


def test_compile_of_ragged_float32_is_a_recorded_failure():
  """torch._grouped_mm has no float32 meta kernel for torch.compile (2.13)."""
  cfg = config.resolve('moe', 'tiny', dtype='float32', moe_impl='ragged',
                       routing='uniform')
  points, summary = compare.measure_framework(
      'torch-compile', cfg, [1, 2], plan=measure.RoundPlan.fixed(3),
      balance=hardware.spec_balance('h100', 'float32'))
  assert points == [] and summary['status'] == 'failed'
  assert 'BF16' in summary['error'], summary['error']


def test_torch_curve_through_the_shared_harness():
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  points, summary = compare.measure_framework(
      'torch', cfg, [1, 2, 4], plan=measure.RoundPlan.fixed(3), warmup=1,
      balance=hardware.spec_balance('h100', 'float32'))
  assert summary['status'] == 'ok' and summary['positions'] == [1, 2, 4]
  assert summary['ratio'][0] == 1.0 and summary['t1_s'] > 0
  assert set(summary['nfp']) == {'0.05', '0.1', '0.2'}
  assert [len(p['samples_s']) for p in points] == [3, 3, 3]
  assert summary['framework_provenance']['torch'] == torch.__version__
