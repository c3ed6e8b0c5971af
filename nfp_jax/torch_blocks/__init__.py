"""PyTorch twins of the Flax blocks, and their forwards prepared for timing.

Optional: needs the torch extra (`pip install -e '.[torch]'`). `modules` holds
the twins (weights copied from the Flax blocks); `run` prepares one forward per
N (eager or torch.compile'd) for the shared timing harness and tells which
kernels PyTorch ran.
"""

from nfp_jax.torch_blocks.modules import MODULES
from nfp_jax.torch_blocks.modules import Attention
from nfp_jax.torch_blocks.modules import DenseFFN
from nfp_jax.torch_blocks.modules import Linear
from nfp_jax.torch_blocks.modules import MoEFFN
from nfp_jax.torch_blocks.modules import build
from nfp_jax.torch_blocks.modules import from_flax
from nfp_jax.torch_blocks.modules import inputs
from nfp_jax.torch_blocks.modules import to_torch

__all__ = ['MODULES', 'Attention', 'DenseFFN', 'Linear', 'MoEFFN', 'build', 'from_flax',
           'inputs', 'to_torch']
