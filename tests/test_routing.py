"""Routing control: forced ids, prefixes, traces, closed forms."""

import json

import numpy as np
import pytest

from nfp_jax import routing
from nfp_jax.config import ConfigError


def test_uniform_ids_are_distinct_per_position_and_nested():
  ids = routing.expert_ids('uniform', 32, 16, 4, seed=3)
  assert ids.shape == (1, 32, 4)
  assert all(len(set(row)) == 4 for row in ids[0])
  again = routing.expert_ids('uniform', 32, 16, 4, seed=3)
  np.testing.assert_array_equal(ids, again)


def test_zipf_skews_popularity():
  ids = routing.expert_ids('zipf:2.0', 2000, 16, 2, seed=0)[0]
  counts = np.bincount(ids.ravel(), minlength=16)
  assert counts.max() > 5 * np.median(counts)


def test_expected_active_experts_uniform_closed_form():
  assert routing.expected_active_experts('uniform', 3, 8, 2) == pytest.approx(
      8 * (1 - (1 - 2 / 8) ** 3))
  assert routing.expected_active_experts('learned', 1, 8, 2) == pytest.approx(2)


def test_expected_active_matches_sampler():
  draws = routing.expert_ids('zipf:1.0', 8, 32, 4, seed=5, layers=400)
  counted = np.mean([len(np.unique(layer)) for layer in draws])
  assert routing.expected_active_experts('zipf:1.0', 8, 32, 4) == pytest.approx(
      counted, rel=0.03)


def test_trace(tmp_path):
  trace = tmp_path / 'ids.json'
  trace.write_text(json.dumps([[0, 1], [0, 1], [2, 3]]))
  ids = routing.expert_ids(f'trace:{trace}', 3, 4, 2, seed=0, layers=2)
  assert ids.shape == (2, 3, 2)
  assert routing.expected_active_experts(f'trace:{trace}', 2, 4, 2) == 2
  with pytest.raises(ConfigError, match='positions'):
    routing.expert_ids(f'trace:{trace}', 8, 4, 2, seed=0)
  np.save(tmp_path / 'bad.npy', np.array([[0, 9]]))
  with pytest.raises(ConfigError, match='outside'):
    routing.expert_ids(f'trace:{tmp_path / "bad.npy"}', 1, 4, 2, seed=0)


@pytest.mark.parametrize('spec', ['zipf', 'zipf:x', 'zipf:-1', 'trace:', 'top'])
def test_bad_specs(spec):
  with pytest.raises(ConfigError):
    routing.parse(spec)
