"""MoE FFN: a float32 router, top-k of E SwiGLU experts, optional shared experts.

Four implementations of the routed experts give the same output:
  ragged  tokens sorted by expert, `jax.lax.ragged_dot` over expert groups;
  tokamax the same with `tokamax.ragged_dot` (the tpu-aot extra), which picks
          its own kernel (a Mosaic kernel on TPU targets);
  gather  the weights of only the activated experts gathered into
          S = min(E, N*top_k) static slots, laid side by side so each
          projection is one 2-D matmul ([N, d] x [d, S*f]); every token runs
          on every slot, weighted by its gate (zero for experts it did not
          choose, and for unused slots, which repeat an expert);
  dense   every expert on every token, masked.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nfp_jax.blocks import common
from nfp_jax.blocks.dense import DenseFFN


class MoEFFN(nnx.Module):
  """Top-k routed SwiGLU experts on activations [N, d_model]."""

  def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int,
               n_shared_experts: int = 0, impl: str = 'gather', *, dtype,
               param_dtype, rngs: nnx.Rngs):
    self.router = common.normal_param(rngs, (d_model, n_experts), d_model,
                                      param_dtype)
    self.gate = common.normal_param(rngs, (n_experts, d_model, d_ff), d_model,
                                    param_dtype)
    self.up = common.normal_param(rngs, (n_experts, d_model, d_ff), d_model,
                                  param_dtype)
    self.down = common.normal_param(rngs, (n_experts, d_ff, d_model), d_ff,
                                    param_dtype)
    self.shared = (DenseFFN(d_model, d_ff * n_shared_experts, dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)
                   if n_shared_experts else None)
    self.n_experts, self.top_k, self.impl, self.dtype = (n_experts, top_k, impl,
                                                         dtype)

  def route(self, x, expert_ids=None):
    """Expert ids [N, k] and their gate weights [N, k] (float32).

    Gate weights are the softmax of the router logits over the chosen experts,
    also when `expert_ids` forces the choice (routing control).
    """
    with jax.named_scope('router'):
      logits = jnp.dot(x.astype(jnp.float32), self.router[...].astype(jnp.float32))
      if expert_ids is None:
        chosen, expert_ids = jax.lax.top_k(logits, self.top_k)
      else:
        chosen = jnp.take_along_axis(logits, expert_ids, axis=-1)
      return expert_ids, jax.nn.softmax(chosen, axis=-1)

  def __call__(self, x, expert_ids=None):
    ids, weights = self.route(x, expert_ids)
    experts = {'ragged': self._ragged, 'tokamax': self._ragged,
               'gather': self._gather, 'dense': self._dense}[self.impl]
    with jax.named_scope('experts'):
      out = experts(x, ids, weights)
    if self.shared is not None:
      with jax.named_scope('shared'):
        out = out + self.shared(x)
    return out

  def _swiglu(self, x, weights, dot_in, dot_out):
    """SwiGLU of the routed experts; `dot_*(a, w)` run one matmul on all experts."""
    gate, up, down = (w.astype(self.dtype) for w in weights)
    g = _scoped('expert_gate', dot_in, x, gate)
    u = _scoped('expert_up', dot_in, x, up)
    return _scoped('expert_down', dot_out, jax.nn.silu(g) * u, down)

  def _ragged(self, x, ids, weights):
    n, k = ids.shape
    flat = ids.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    token = order // k
    sizes = jnp.bincount(flat, length=self.n_experts).astype(jnp.int32)
    dot = lambda a, w: jax.lax.ragged_dot(a, w, sizes)
    if self.impl == 'tokamax':
      import tokamax  # pylint: disable=g-import-not-at-top
      from absl import flags  # pylint: disable=g-import-not-at-top
      if not flags.FLAGS.is_parsed():
        # tokamax reads its absl flags on first use and would parse sys.argv
        # (pytest's, a notebook kernel's) if nothing had: take the defaults.
        flags.FLAGS.mark_as_parsed()
      dot = lambda a, w: tokamax.ragged_dot(a, w, sizes)
    y = self._swiglu(x.astype(self.dtype)[token],
                     (self.gate[...], self.up[...], self.down[...]), dot, dot)
    y = y * weights.reshape(-1)[order][:, None].astype(self.dtype)
    return jnp.zeros((n, x.shape[-1]), self.dtype).at[token].add(y)

  def _gather(self, x, ids, weights):
    n, k = ids.shape
    slots = min(self.n_experts, n * k)
    active = jnp.zeros((self.n_experts,), jnp.bool_).at[ids.reshape(-1)].set(True)
    slot_expert = jnp.nonzero(active, size=slots, fill_value=ids[0, 0])[0]
    valid = jnp.arange(slots) < jnp.sum(active)
    # combine[n, s]: gate weight of token n for the expert in slot s.
    hit = (ids[:, :, None] == slot_expert[None, None, :]) & valid
    combine = jnp.sum(jnp.where(hit, weights[:, :, None], 0.0), axis=1)
    with jax.named_scope('expert_gather'):
      gate, up, down = (w[...][slot_expert].astype(self.dtype)
                        for w in (self.gate, self.up, self.down))
    # Slots side by side: one [N, d] x [d, S*f] matmul per projection, and the
    # down projection [N, S*f] x [S*f, d] sums the weighted slots.
    d, f = gate.shape[1], gate.shape[2]
    side_by_side = lambda w: w.transpose(1, 0, 2).reshape(d, slots * f)
    x = x.astype(self.dtype)
    g = _scoped('expert_gate', jnp.dot, x, side_by_side(gate))
    u = _scoped('expert_up', jnp.dot, x, side_by_side(up))
    h = (jax.nn.silu(g) * u).reshape(n, slots, f) * combine[:, :, None].astype(
        self.dtype)
    return _scoped('expert_down', jnp.dot, h.reshape(n, slots * f),
                   down.reshape(slots * f, d))

  def _dense(self, x, ids, weights):
    combine = jnp.sum(jax.nn.one_hot(ids, self.n_experts, dtype=jnp.float32)
                      * weights[:, :, None], axis=1)
    y = self._swiglu(x.astype(self.dtype),
                     (self.gate[...], self.up[...], self.down[...]),
                     lambda a, w: jnp.einsum('nd,edf->enf', a, w),
                     lambda h, w: jnp.einsum('enf,efd->end', h, w))
    return jnp.einsum('end,ne->nd', y, combine.astype(self.dtype))


def _scoped(name, fn, *args):
  with jax.named_scope(name):
    return fn(*args)
