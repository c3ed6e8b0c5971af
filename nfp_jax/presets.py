"""Model shapes from public configs (Hugging Face `config.json` of each model).

Only the shapes that decide the cost of a decode forward are kept. Where a model's
architecture has a part nfp_jax does not model, the preset says so in `notes`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
  """Shapes of one model. For MoE models `d_ff` is the width of one expert."""
  name: str
  d_model: int
  d_ff: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  n_layers: int
  vocab: int
  rope_theta: float
  n_experts: int = 0
  top_k: int = 0
  n_shared_experts: int = 0
  diffusion: bool = False
  source: str = ''
  notes: str = ''


PRESETS = {p.name: p for p in [
    Preset('llama3-8b', d_model=4096, d_ff=14336, n_heads=32, n_kv_heads=8,
           head_dim=128, n_layers=32, vocab=128256, rope_theta=500000.0,
           source='https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json'),
    Preset('qwen2.5-7b', d_model=3584, d_ff=18944, n_heads=28, n_kv_heads=4,
           head_dim=128, n_layers=28, vocab=152064, rope_theta=1000000.0,
           source='https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json',
           notes='QKV biases are not modelled.'),
    Preset('llada-8b', d_model=4096, d_ff=12288, n_heads=32, n_kv_heads=32,
           head_dim=128, n_layers=32, vocab=126464, rope_theta=500000.0,
           diffusion=True,
           source='https://huggingface.co/GSAI-ML/LLaDA-8B-Instruct/blob/main/config.json'),
    Preset('mixtral-8x7b', d_model=4096, d_ff=14336, n_heads=32, n_kv_heads=8,
           head_dim=128, n_layers=32, vocab=32000, rope_theta=1000000.0,
           n_experts=8, top_k=2,
           source='https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json'),
    Preset('qwen3-30b-a3b', d_model=2048, d_ff=768, n_heads=32, n_kv_heads=4,
           head_dim=128, n_layers=48, vocab=151936, rope_theta=1000000.0,
           n_experts=128, top_k=8,
           source='https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json',
           notes='QK-norm is not modelled.'),
    Preset('olmoe-1b-7b', d_model=2048, d_ff=1024, n_heads=16, n_kv_heads=16,
           head_dim=128, n_layers=16, vocab=50304, rope_theta=10000.0,
           n_experts=64, top_k=8,
           source='https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json',
           notes='QK-norm is not modelled.'),
    Preset('deepseek-v2-lite', d_model=2048, d_ff=1408, n_heads=16, n_kv_heads=16,
           head_dim=128, n_layers=27, vocab=102400, rope_theta=10000.0,
           n_experts=64, top_k=6, n_shared_experts=2,
           source='https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json',
           notes=('Multi-head latent attention is modelled as plain MHA with '
                  'head_dim 128; the first layer\'s dense FFN (10944 wide) is '
                  'modelled as an MoE layer like the others.')),
    Preset('tiny', d_model=64, d_ff=128, n_heads=4, n_kv_heads=2, head_dim=16,
           n_layers=2, vocab=256, rope_theta=10000.0, n_experts=4, top_k=2,
           n_shared_experts=1, source='nfp_jax test shape'),
]}
