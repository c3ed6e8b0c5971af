"""Running an entry point as a user would: `python -m experiments.<name>`."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module: str, args, env, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', module] + list(args), cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)
