"""Errors a user can cause: each carries one sentence, and the entry points
print it and exit with code 2 (a traceback would be a bug).

A leaf module: it imports nothing from nfp_jax, so any module can raise these
without an import cycle.
"""


class Error(Exception):
  """A user-caused error: its text is one sentence."""


class ConfigError(Error, ValueError):
  """A configuration (block, routing, target, hardware) that cannot be built."""


class CompileError(Error, ValueError):
  """A compile a user asked for that cannot be done."""
