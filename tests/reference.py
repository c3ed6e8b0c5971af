"""NumPy references of the blocks, in float64, from the Flax modules' weights."""

import numpy as np


def arr(v):
  return np.asarray(v[...], dtype=np.float64)


def silu(x):
  return x / (1 + np.exp(-x))


def softmax(x, axis=-1):
  x = x - np.max(x, axis=axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=axis, keepdims=True)


def linear(m, x):
  return x @ arr(m.proj)


def dense(m, x):
  return (silu(x @ arr(m.gate)) * (x @ arr(m.up))) @ arr(m.down)


def moe(m, x, expert_ids=None):
  logits = x @ arr(m.router)
  if expert_ids is None:
    expert_ids = np.argsort(-logits, axis=-1, kind='stable')[:, :m.top_k]
  gates = softmax(np.take_along_axis(logits, expert_ids, axis=-1))
  gate, up, down = arr(m.gate), arr(m.up), arr(m.down)
  out = np.zeros_like(x)
  for n in range(x.shape[0]):
    for j, e in enumerate(expert_ids[n]):
      h = silu(x[n] @ gate[e]) * (x[n] @ up[e])
      out[n] += gates[n, j] * (h @ down[e])
  if m.shared is not None:
    out += dense(m.shared, x)
  return out


def rope(x, positions, theta):
  half = x.shape[-1] // 2
  freq = theta ** (-np.arange(half) / half)
  angle = positions[:, None, None] * freq
  x1, x2 = x[..., :half], x[..., half:]
  return np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle),
                         x2 * np.cos(angle) + x1 * np.sin(angle)], axis=-1)


def attention(m, x):
  n = x.shape[0]
  h, hk, hd, kv = m.n_heads, m.n_kv_heads, m.head_dim, m.kv_len
  qkv = x @ arr(m.qkv)
  q = qkv[:, :h * hd].reshape(n, h, hd)
  k = qkv[:, h * hd:(h + hk) * hd].reshape(n, hk, hd)
  v = qkv[:, (h + hk) * hd:].reshape(n, hk, hd)
  positions = kv + np.arange(n)
  q, k = rope(q, positions, m.rope_theta), rope(k, positions, m.rope_theta)
  keys = np.concatenate([arr(m.cache_k), k])
  values = np.concatenate([arr(m.cache_v), v])
  out = np.zeros((n, h, hd))
  for head in range(h):
    kh = head // (h // hk)
    scores = q[:, head] @ keys[:, kh].T / np.sqrt(hd)
    if m.mask == 'causal':
      for i in range(n):
        scores[i, kv + i + 1:] = -np.inf
    out[:, head] = softmax(scores) @ values[:, kh]
  return out.reshape(n, h * hd) @ arr(m.o)


def rms_norm(m, x):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + m.eps) * arr(m.scale)


def layer(m, x, expert_ids=None):
  x = x + attention(m.attention, rms_norm(m.attn_norm, x))
  h = rms_norm(m.ffn_norm, x)
  return x + (moe(m.ffn, h, expert_ids) if m.is_moe else dense(m.ffn, h))


def model(m, tokens, expert_ids=None):
  x = arr(m.embed)[tokens]
  for i, lyr in enumerate(m.layers):
    x = layer(lyr, x, None if expert_ids is None else expert_ids[i])
  return rms_norm(m.final_norm, x) @ arr(m.lm_head)
