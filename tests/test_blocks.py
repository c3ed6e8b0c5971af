"""Blocks vs NumPy references; the three MoE implementations agree."""

import jax.numpy as jnp
import numpy as np
import pytest

from nfp_jax import blocks
from nfp_jax import config
from tests import reference

# Per compute dtype: relative tolerance on the output's max-abs scale.
TOLERANCE = {'float32': 2e-4, 'bfloat16': 6e-2}


def run_block(cfg, positions):
  module = blocks.build(cfg)
  inputs = blocks.inputs(cfg, positions, positions + 2)
  out = np.asarray(module(*inputs).astype(jnp.float32), np.float64)
  as_np = [np.asarray(a.astype(jnp.float32) if a.dtype != jnp.int32 else a)
           for a in inputs]
  return module, as_np, out


def check(out, expected, dtype):
  assert np.all(np.isfinite(out))
  scale = np.max(np.abs(expected))
  np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('positions', [1, 5])
def test_linear(dtype, positions):
  cfg = config.resolve('linear', 'tiny', dtype=dtype,
                       overrides={'d_model': 48, 'd_ff': 80})
  module, (x,), out = run_block(cfg, positions)
  assert out.shape == (positions, 80)
  check(out, reference.linear(module, x.astype(np.float64)), dtype)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('positions', [1, 5])
def test_dense(dtype, positions):
  cfg = config.resolve('dense', 'tiny', dtype=dtype)
  module, (x,), out = run_block(cfg, positions)
  check(out, reference.dense(module, x.astype(np.float64)), dtype)


@pytest.mark.parametrize('impl', config.MOE_IMPLS)
@pytest.mark.parametrize('routing', ['learned', 'uniform', 'zipf:1.5'])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_moe(impl, routing, dtype):
  cfg = config.resolve('moe', 'tiny', dtype=dtype, moe_impl=impl, routing=routing,
                       overrides={'n_experts': 6, 'top_k': 2})
  module, inputs, out = run_block(cfg, 5)
  ids = inputs[1] if len(inputs) > 1 else None
  check(out, reference.moe(module, inputs[0].astype(np.float64), ids), dtype)


def test_moe_implementations_agree_with_shared_experts():
  outs = []
  for impl in config.MOE_IMPLS:
    cfg = config.resolve('moe', 'tiny', dtype='float32', moe_impl=impl,
                         overrides={'n_shared_experts': 2})
    outs.append(run_block(cfg, 7)[2])
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
  np.testing.assert_allclose(outs[0], outs[2], atol=1e-5)


@pytest.mark.parametrize('impl', config.ATTN_IMPLS)
@pytest.mark.parametrize('mask', config.MASKS)
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_attention(impl, mask, dtype):
  cfg = config.resolve('attention', 'tiny', dtype=dtype, attn_impl=impl,
                       mask=mask, kv_len=12)
  module, (x,), out = run_block(cfg, 4)
  check(out, reference.attention(module, x.astype(np.float64)), dtype)


def test_block_mask_differs_from_causal():
  outs = [run_block(config.resolve('attention', 'tiny', dtype='float32',
                                   mask=mask, kv_len=8), 4)[2]
          for mask in config.MASKS]
  # The last position sees everything under both masks; the first does not.
  np.testing.assert_allclose(outs[0][-1], outs[1][-1], atol=1e-5)
  assert np.max(np.abs(outs[0][0] - outs[1][0])) > 1e-3


@pytest.mark.parametrize('routing', ['learned', 'uniform'])
def test_layer_moe(routing):
  cfg = config.resolve('layer', 'tiny', dtype='float32', routing=routing, kv_len=6)
  module, inputs, out = run_block(cfg, 3)
  ids = inputs[1] if len(inputs) > 1 else None
  check(out, reference.layer(module, inputs[0].astype(np.float64), ids), 'float32')


def test_layer_dense():
  cfg = config.resolve('layer', 'tiny', dtype='float32', kv_len=6,
                       overrides={'n_experts': 0, 'top_k': 0})
  assert not cfg.is_moe
  module, (x,), out = run_block(cfg, 3)
  check(out, reference.layer(module, x.astype(np.float64)), 'float32')


def test_model():
  cfg = config.resolve('model', 'tiny', dtype='float32', routing='uniform', kv_len=5)
  module, (tokens, ids), out = run_block(cfg, 3)
  assert ids.shape == (cfg.n_layers, 3, cfg.top_k)
  check(out, reference.model(module, tokens, ids), 'float32')


def test_init_is_deterministic_from_seed():
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  a, b = blocks.build(cfg), blocks.build(cfg)
  np.testing.assert_array_equal(np.asarray(a.gate[...]), np.asarray(b.gate[...]))
  c = blocks.build(config.resolve('dense', 'tiny', dtype='float32', seed=1))
  assert not np.array_equal(np.asarray(a.gate[...]), np.asarray(c.gate[...]))


def test_param_dtype_apart_from_compute_dtype():
  cfg = config.resolve('dense', 'tiny', dtype='float32', param_dtype='bfloat16')
  module = blocks.build(cfg)
  assert module.gate[...].dtype == jnp.bfloat16
  assert module(blocks.inputs(cfg, 2)[0]).dtype == jnp.float32


def test_abstract_forward_allocates_nothing_and_lowers():
  import jax
  cfg = config.resolve('moe', 'tiny', routing='uniform')
  fn, state = blocks.abstract_forward(cfg)
  assert all(isinstance(leaf, jax.ShapeDtypeStruct)
             for leaf in jax.tree.leaves(state))
  lowered = jax.jit(fn).lower(state, *blocks.abstract_inputs(cfg, 4))
  assert 'dot' in lowered.as_text() or 'dot_general' in lowered.as_text()
