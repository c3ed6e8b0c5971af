"""Each given py_binary starts: its imports resolve and absl parses its flags.

  check_entry_points.py experiments/sweep experiments/bench_harness ...

Runs every binary with --only_check_args (absl exits 0 right after parsing the
flags, before main), so nothing is measured.
"""

import subprocess
import sys


def main(binaries: list[str]) -> int:
  failed = []
  for binary in binaries:
    proc = subprocess.run([binary, '--only_check_args'], capture_output=True,
                          text=True, timeout=600, check=False)
    print(f'{binary} --only_check_args: exit {proc.returncode}', flush=True)
    if proc.returncode != 0:
      failed.append(binary)
      print(proc.stdout[-2000:], proc.stderr[-4000:], sep='\n', flush=True)
  if not binaries:
    print('no binaries given')
    return 1
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
