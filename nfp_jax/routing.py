"""Routing control for MoE measurements: which experts each position activates.

Specs:
  learned       the block's (random) router decides; nothing is forced.
  uniform       each position draws top_k distinct experts uniformly at random.
  zipf:<s>      each position draws top_k distinct experts without replacement,
                with popularity proportional to rank**-s over a fixed random
                ranking of the experts (Plackett-Luce sampling).
  trace:<file>  expert ids saved per position: a .npy or .json integer array of
                shape [positions, top_k], or [layers, positions, top_k].

Forced ids are drawn once for the largest swept N and the first N rows are used
for each N, so the positions of a smaller forward are a prefix of a larger one.
The same module gives the routing model's expected number of activated experts
E_act(N) (principle.md) for the predictors.
"""

import dataclasses
import json
import pathlib

import numpy as np

from nfp_jax.errors import ConfigError

_MC_DRAWS = 20000


@dataclasses.dataclass(frozen=True)
class RoutingSpec:
  kind: str  # learned | uniform | zipf | trace
  zipf_s: float = 0.0
  path: str = ''


def parse(spec: str) -> RoutingSpec:
  """Parses a routing spec string; raises ConfigError on bad syntax."""
  if spec in ('learned', 'uniform'):
    return RoutingSpec(spec)
  if spec.startswith('zipf:'):
    try:
      s = float(spec[5:])
    except ValueError:
      s = -1.0
    if not s >= 0:
      raise ConfigError(f'Routing {spec!r} needs a non-negative exponent, as in zipf:1.2.')
    return RoutingSpec('zipf', zipf_s=s)
  if spec.startswith('trace:') and len(spec) > 6:
    return RoutingSpec('trace', path=spec[6:])
  raise ConfigError(f'Unknown routing {spec!r}; choose learned, uniform, '
                    'zipf:<s> or trace:<file>.')


def load_trace(path: str, n_experts: int, top_k: int) -> np.ndarray:
  """Loads a routing trace as int32 [layers, positions, top_k]."""
  file = pathlib.Path(path)
  try:
    if file.suffix == '.npy':
      ids = np.load(file)
    else:
      ids = np.asarray(json.loads(file.read_text()))
  except (OSError, ValueError) as e:
    raise ConfigError(f'Cannot read routing trace {path}: {e}.') from None
  if ids.ndim == 2:
    ids = ids[None]
  if ids.ndim != 3 or ids.shape[-1] != top_k or not np.issubdtype(ids.dtype, np.integer):
    raise ConfigError(f'Routing trace {path} must hold integers of shape '
                      f'[positions, {top_k}] or [layers, positions, {top_k}], '
                      f'got {ids.dtype} {list(ids.shape)}.')
  if ids.min() < 0 or ids.max() >= n_experts:
    raise ConfigError(f'Routing trace {path} has expert ids outside [0, {n_experts}).')
  return ids.astype(np.int32)


def _zipf_log_weights(n_experts: int, s: float, seed: int) -> np.ndarray:
  ranks = np.random.default_rng([seed, 7]).permutation(n_experts) + 1
  return -s * np.log(ranks.astype(np.float64))


def _draw(spec: RoutingSpec, draws: int, n_experts: int, top_k: int,
          rng: np.random.Generator) -> np.ndarray:
  """Draws [draws, top_k] distinct expert ids per row (Gumbel top-k)."""
  if spec.kind == 'uniform':
    logw = np.zeros(n_experts)
  else:
    logw = _zipf_log_weights(n_experts, spec.zipf_s, 0)
  keys = logw[None, :] + rng.gumbel(size=(draws, n_experts))
  return np.argsort(-keys, axis=1)[:, :top_k].astype(np.int32)


def expert_ids(spec_text: str, positions: int, n_experts: int, top_k: int,
               seed: int, layers: int = 1) -> np.ndarray | None:
  """Forced expert ids [layers, positions, top_k], or None for `learned`."""
  spec = parse(spec_text)
  if spec.kind == 'learned':
    return None
  if spec.kind == 'trace':
    ids = load_trace(spec.path, n_experts, top_k)
    if ids.shape[1] < positions:
      raise ConfigError(f'Routing trace {spec.path} has {ids.shape[1]} positions; '
                        f'the sweep needs {positions}.')
    if ids.shape[0] == 1:
      ids = np.repeat(ids, layers, axis=0)
    elif ids.shape[0] < layers:
      raise ConfigError(f'Routing trace {spec.path} has {ids.shape[0]} layers; '
                        f'the model has {layers}.')
    return ids[:layers, :positions]
  rng = np.random.default_rng([seed, 11])
  return np.stack([_draw(spec, positions, n_experts, top_k, rng)
                   for _ in range(layers)])


def inclusion_probabilities(spec_text: str, n_experts: int, top_k: int) -> np.ndarray:
  """Per-position probability p_e that expert e is among the top_k (sum = top_k).

  `learned` is treated as uniform (a random router on random activations);
  zipf's inclusion probabilities under sampling without replacement have no
  simple closed form, so they are estimated from the sampler itself with a fixed
  seed (this describes the routing model, not any measured curve).
  """
  spec = parse(spec_text)
  if spec.kind in ('learned', 'uniform'):
    return np.full(n_experts, top_k / n_experts)
  if spec.kind == 'zipf':
    draws = _draw(spec, _MC_DRAWS, n_experts, top_k, np.random.default_rng(1234))
    return np.bincount(draws.ravel(), minlength=n_experts) / _MC_DRAWS
  raise ConfigError('A trace has no per-position probabilities; count it instead.')


def expected_active_experts(spec_text: str, positions: int, n_experts: int,
                            top_k: int, layer: int = 0) -> float:
  """E_act(N): expected number of distinct experts the first N positions use.

  Closed forms of principle.md: uniform E*(1-(1-k/E)^N); skewed
  sum_e 1-(1-p_e)^N; a trace is counted exactly.
  """
  spec = parse(spec_text)
  if spec.kind == 'trace':
    ids = load_trace(spec.path, n_experts, top_k)
    return float(len(np.unique(ids[min(layer, ids.shape[0] - 1), :positions])))
  p = inclusion_probabilities(spec_text, n_experts, top_k)
  return float(np.sum(1.0 - (1.0 - p) ** positions))
