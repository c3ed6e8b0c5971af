"""nfp_jax: Near-Free Parallelism of decode forwards on JAX/XLA.

Data flow: blocks -> compile -> read tiling (hlo) -> measure -> predict
(principle) -> compare / report.
"""

__version__ = '0.1.0'
