"""Idle-compute arithmetic and analytic costs on known numbers."""

import math

import pytest

from nfp_jax import config
from nfp_jax import costs
from nfp_jax import hardware
from nfp_jax import principle
from nfp_jax import routing


def test_n_idle_linear_flops():
  # flops(N) = 100 N; budget = 1.1 * 10 * 1000 / 1 = 11000 -> N = 110.
  assert principle.n_idle(lambda n: 100.0 * n, 1000.0, 10.0, 1.0, 0.1) == 110


def test_n_idle_compute_bound_at_one():
  assert principle.n_idle(lambda n: 1e9 * n, 1.0, 1.0, 1.0, 0.1) == 1


def test_h100_ridge_and_dense_gemm_rule():
  h100 = hardware.spec_balance('h100', 'bfloat16')
  assert h100.ridge == pytest.approx(295, rel=0.01)
  assert hardware.spec_balance('a100', 'bfloat16').ridge == pytest.approx(153, rel=0.01)
  assert hardware.spec_balance('h200', 'bfloat16').ridge == pytest.approx(206, rel=0.01)
  # A wide bf16 FFN: activations are negligible, so N_idle ~ (1+tau) ridge b/2.
  cfg = config.resolve('dense', 'llama3-8b', dtype='bfloat16',
                       overrides={'d_model': 16384, 'd_ff': 65536})
  expected = 1.1 * h100.ridge * 2 / 2
  assert principle.idle_compute(cfg, h100)['0.1'] == pytest.approx(expected, rel=0.02)


def test_linear_costs():
  cfg = config.resolve('linear', 'tiny', dtype='bfloat16',
                       overrides={'d_model': 96, 'd_ff': 200})
  (proj,) = costs.kernels(cfg, 5)
  assert (proj.rows, proj.contraction, proj.width) == (5, 96, 200)
  assert proj.flops == 2 * 5 * 96 * 200
  assert proj.bytes == 2 * (96 * 200 + 5 * (96 + 200))


def test_dense_costs():
  cfg = config.resolve('dense', 'tiny', dtype='float32')
  d, f = cfg.d_model, cfg.d_ff
  assert costs.total_flops(cfg, 3) == 3 * 2 * 3 * d * f
  weights = 3 * d * f * 4
  acts = 4 * (2 * 3 * (d + f) + 3 * (f + d))
  assert costs.total_bytes(cfg, 3) == weights + acts


def test_moe_costs_follow_activated_experts():
  cfg = config.resolve('moe', 'olmoe-1b-7b', dtype='bfloat16', routing='uniform')
  e, k = cfg.n_experts, cfg.top_k
  expert_bytes = 3 * cfg.d_model * cfg.d_ff * 2
  for n in (1, 4, 64):
    active = e * (1 - (1 - k / e) ** n)
    weights = sum(kc.weight_bytes for kc in costs.kernels(cfg, n)
                  if kc.name.startswith('expert'))
    assert weights == pytest.approx(active * expert_bytes)
  # Useful flops: top_k experts per position.
  expert_flops = sum(kc.flops for kc in costs.kernels(cfg, 8)
                     if kc.name.startswith('expert'))
  assert expert_flops == 8 * k * 3 * 2 * cfg.d_model * cfg.d_ff


def test_zipf_activates_fewer_experts_than_uniform():
  uniform = routing.expected_active_experts('uniform', 16, 64, 8)
  zipf = routing.expected_active_experts('zipf:1.2', 16, 64, 8)
  assert zipf < uniform < 64
  assert sum(routing.inclusion_probabilities('zipf:1.2', 64, 8)) == pytest.approx(8)


def test_attention_costs():
  cfg = config.resolve('attention', 'llama3-8b', dtype='bfloat16', kv_len=4096)
  kernels = {kc.name: kc for kc in costs.kernels(cfg, 4)}
  cache = 4096 * cfg.n_kv_heads * cfg.head_dim * 2
  assert kernels['scores'].weight_bytes == cache
  assert kernels['scores'].flops == 2 * 4 * cfg.n_heads * cfg.head_dim * (4096 + 4)
  assert kernels['scores'].rows == 4 * cfg.n_heads // cfg.n_kv_heads


def test_model_costs_multiply_layers():
  cfg = config.resolve('model', 'tiny', dtype='float32')
  layer = config.resolve('layer', 'tiny', dtype='float32')
  extra = sum(kc.flops for kc in costs.kernels(cfg, 2) if kc.count == 1)
  assert costs.total_flops(cfg, 2) == pytest.approx(
      cfg.n_layers * costs.total_flops(layer, 2) + extra)
  assert math.isclose(sum(kc.count for kc in costs.kernels(cfg, 1)) - 3,
                      cfg.n_layers * len(costs.kernels(layer, 1)))
